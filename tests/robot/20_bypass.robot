*** Settings ***
Library             SSHLibrary
Library             Collections
Resource            api.resource
Suite Setup         Find the node's NethVoice

*** Test Cases ***
get-status shows the bypass and its checks
    ${response} =    Run task    module/${module_id}/get-status    null
    Dictionary Should Contain Key    ${response}    bypass
    Dictionary Should Contain Key    ${response["bypass"]}    checks
    ${ids} =    Evaluate    [c["id"] for c in $response["bypass"]["checks"]]
    ${bad} =    Evaluate    [i for i in $ids if not __import__("re").fullmatch(r"[a-z0-9_]+", i)]
    Should Be Empty    ${bad}

A private external address is a validation failure
    Skip If    not $nethvoice    no NethVoice instance on node 1: install one to run this case
    ${errors} =    Run task    module/${module_id}/configure-bypass
    ...    {"nat":{"external_address":"192.168.1.1"},"dry_run":true}    rc_expected=10
    Should name the parameter    ${errors}    nat    nat_external_address_private

An unknown trunk is a validation failure
    Skip If    not $nethvoice    no NethVoice instance on node 1: install one to run this case
    ${errors} =    Run task    module/${module_id}/configure-bypass
    ...    {"trunks":["robot-no-such-trunk"],"dry_run":true}    rc_expected=10
    Should name the parameter    ${errors}    trunks    trunks_not_found

A configure-bypass dry run changes nothing
    Skip If    not $nethvoice    no NethVoice instance on node 1: install one to run this case
    ${response} =    Run task    module/${module_id}/configure-bypass    {"trunks":[],"dry_run":true}
    Should Be True    ${response["dry_run"]}
    Should Not Be True    ${response["reloaded"]}

verify-bypass probes Asterisk from the node
    Skip If    not $nethvoice    no NethVoice instance on node 1: install one to run this case
    ${response} =    Run task    module/${module_id}/verify-bypass    {}
    ${asterisk} =    Evaluate    [p for p in $response["probes"] if p["expect"] == "asterisk"]
    Should Not Be Empty    ${asterisk}
    ${answers} =    Evaluate    [p["outcome"] for p in $asterisk]
    Should Contain    ${answers}    reply

reconcile-bypass dry run plans nothing on a fresh module
    ${response} =    Run task    module/${module_id}/reconcile-bypass    {"dry_run":true}
    Should Be Empty    ${response["plan"]}
