*** Settings ***
Library             SSHLibrary
Library             Collections
Resource            api.resource
Suite Setup         Find the node's NethVoice

*** Variables ***
# Source addresses from TEST-NET-1 (RFC 5737): never a real peer
${SOURCE}           192.0.2.10
${FORWARD_ID}       udp-ipv4-5060-192.0.2.10
${DRY_RUN}          {"protocol":"udp","family":"ipv4","port":5060,"source":"192.0.2.10","allow_any_source":false,"description":"robot","dry_run":true}
${APPLY}            {"protocol":"udp","family":"ipv4","port":5060,"source":"192.0.2.10","allow_any_source":false,"description":"robot"}

*** Test Cases ***
get-status runs
    ${response} =    Run task    module/${module_id}/get-status    null
    Should Be Equal    ${response["instance"]}    ${module_id}

A bad source is a validation failure
    ${errors} =    Run task    module/${module_id}/add-port-forward
    ...    {"protocol":"udp","family":"ipv4","port":5060,"source":"192.0.2.300","allow_any_source":false,"description":"robot","dry_run":true}
    ...    rc_expected=10
    ${sources} =    Evaluate    [e for e in $errors if e["parameter"] == "source"]
    Should Not Be Empty    ${sources}    no error for source in ${errors}

A forward without NethVoice names the cause
    Skip If    $nethvoice    the node has a NethVoice instance (${nethvoice})
    ${errors} =    Run task    module/${module_id}/add-port-forward    ${DRY_RUN}    rc_expected=10
    Should name the parameter    ${errors}    instance    instance_no_nethvoice

A dry run returns a plan
    Skip If    not $nethvoice    no NethVoice instance on node 1: install one to run this case
    ${response} =    Run task    module/${module_id}/add-port-forward    ${DRY_RUN}
    Should Be True    ${response["dry_run"]}
    Should Not Be Empty    ${response["plan"]}
    Should Be Equal    ${response["forward"]["id"]}    ${FORWARD_ID}
    Should Be Equal    ${response["forward"]["state"]}    planned

A dry run changes nothing
    ${response} =    Run task    module/${module_id}/list-port-forwards    null
    ${ids} =    Evaluate    [f["id"] for f in $response["forwards"]]
    Should Not Contain    ${ids}    ${FORWARD_ID}
    Rule is not in firewalld    ${SOURCE}

Removing an unknown forward is a validation failure
    ${errors} =    Run task    module/${module_id}/remove-port-forward
    ...    {"id":"${FORWARD_ID}","dry_run":true}    rc_expected=10
    Should name the parameter    ${errors}    id    id_not_found

Add, list and remove a forward
    Skip If    not $nethvoice    no NethVoice instance on node 1: install one to run this case
    ${response} =    Run task    module/${module_id}/add-port-forward    ${APPLY}
    Should Be Equal    ${response["forward"]["state"]}    in_sync
    Rule is in firewalld    ${SOURCE}
    ${response} =    Run task    module/${module_id}/list-port-forwards    null
    ${ids} =    Evaluate    [f["id"] for f in $response["forwards"]]
    Should Contain    ${ids}    ${FORWARD_ID}
    ${response} =    Run task    module/${module_id}/remove-port-forward
    ...    {"id":"${FORWARD_ID}","dry_run":true}
    Should Not Be Empty    ${response["plan"]}
    Rule is in firewalld    ${SOURCE}
    Run task    module/${module_id}/remove-port-forward    {"id":"${FORWARD_ID}","dry_run":false}
    ${response} =    Run task    module/${module_id}/list-port-forwards    null
    ${ids} =    Evaluate    [f["id"] for f in $response["forwards"]]
    Should Not Contain    ${ids}    ${FORWARD_ID}
    Rule is not in firewalld    ${SOURCE}

A port the node uses is refused
    ${errors} =    Run task    module/${module_id}/add-port-forward
    ...    {"protocol":"tcp","family":"ipv4","port":443,"allow_any_source":true,"description":"robot","dry_run":true}
    ...    rc_expected=10
    Should name the parameter    ${errors}    port    port_in_use
    Rule is not in firewalld    0.0.0.0/0

A loopback source is refused
    ${errors} =    Run task    module/${module_id}/add-port-forward
    ...    {"protocol":"udp","family":"ipv4","port":5060,"source":"127.0.0.1","allow_any_source":false,"description":"robot","dry_run":true}
    ...    rc_expected=10
    Should name the parameter    ${errors}    source    source_loopback

A way out for something the module does not own is refused
    ${errors} =    Run task    module/${module_id}/reconcile-bypass
    ...    {"keep_theirs":["trunk:nethvoice1:999"],"dry_run":true}    rc_expected=10
    Should name the parameter    ${errors}    keep_theirs    keep_theirs_not_owned

get-status lists conflicts
    ${response} =    Run task    module/${module_id}/get-status    null
    Dictionary Should Contain Key    ${response["bypass"]}    conflicts

diagnose-sip listens for a short window and gives the proxy's trace back
    ${before} =    Execute Command    curl -s -X POST http://127.0.0.1:5060/RPC -d '{"jsonrpc":"2.0","method":"siptrace.status","params":["check"],"id":1}'
    ${response} =    Run task    module/${module_id}/diagnose-sip    {"duration":3}
    Should Contain Any    ${response["mirror"]["state"]}    ours    shared    busy    unavailable
    ${after} =    Execute Command    curl -s -X POST http://127.0.0.1:5060/RPC -d '{"jsonrpc":"2.0","method":"siptrace.status","params":["check"],"id":1}'
    Should Be Equal    ${before}    ${after}

diagnose-sip refuses a window longer than 5 minutes
    ${errors} =    Run task    module/${module_id}/diagnose-sip    {"duration":301}    rc_expected=10
    Should name the parameter    ${errors}    duration    duration_number_lte
