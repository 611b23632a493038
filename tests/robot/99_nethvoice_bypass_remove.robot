*** Settings ***
Library             SSHLibrary
Resource            api.resource
Suite Setup         Find the node's NethVoice

*** Variables ***
${SOURCE}           192.0.2.11

*** Test Cases ***
Leave a forward for the removal to withdraw
    Skip If    not $nethvoice    no NethVoice instance on node 1: install one to run this case
    Run task    module/${module_id}/add-port-forward    {"source":"${SOURCE}","description":"robot"}
    Rule is in firewalld    ${SOURCE}

Remove the module
    ${rc} =    Execute Command    remove-module --no-preserve ${module_id}
    ...    return_rc=True    return_stdout=False
    Should Be Equal As Integers    ${rc}    0

No forward of ours is left in firewalld
    Rule is not in firewalld    ${SOURCE}
    Rule is not in firewalld    192.0.2.10

Its timer and exporter are gone
    ${units} =    Execute Command    ls /etc/systemd/system/${module_id}-* 2>/dev/null
    Should Be Empty    ${units}
    ${active} =    Execute Command    systemctl is-active ${module_id}-exporter.service
    Should Not Be Equal    ${active}    active
