*** Settings ***
Documentation       nethvoice-bypass on a real NS8 node. ns8-github-actions test-module.sh runs
...                 robot -v NODE_ADDR:<leader> -v IMAGE_URL:<image> -v SSH_KEYFILE:<key> tests/
Library             SSHLibrary
Suite Setup         Connect to the node
Suite Teardown      Collect the journal

*** Variables ***
${SSH_KEYFILE}      %{HOME}/.ssh/id_ecdsa
${JOURNAL_SINCE}    0

*** Keywords ***
Connect to the node
    Open Connection    ${NODE_ADDR}
    Login With Public Key    root    ${SSH_KEYFILE}
    ${output} =    Execute Command    systemctl is-system-running --wait
    Should Be True    '${output}' == 'running' or '${output}' == 'degraded'
    ${now} =    Execute Command    date +%s
    Set Global Variable    ${JOURNAL_SINCE}    ${now}

Collect the journal
    # Kept next to the Robot log, to read agent@<module> errors after a failed run
    Execute Command    journalctl --since @${JOURNAL_SINCE} >journal-dump.log
    Get File    journal-dump.log    ${OUTPUT DIR}/journal-${SUITE NAME}.log
    Execute Command    rm -f journal-dump.log
    Close All Connections
