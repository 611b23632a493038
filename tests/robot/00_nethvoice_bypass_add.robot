*** Settings ***
Library     SSHLibrary

*** Test Cases ***
Add the module
    ${output}    ${rc} =    Execute Command    add-module ${IMAGE_URL} 1    return_rc=True
    Should Be Equal As Integers    ${rc}    0    add-module failed: ${output}
    &{output} =    Evaluate    ${output}
    Set Global Variable    ${module_id}    ${output.module_id}

The module is rootfull and its agent runs
    ${rc} =    Execute Command    test -d /var/lib/nethserver/${module_id}/actions/add-port-forward
    ...    return_stdout=False    return_rc=True
    Should Be Equal As Integers    ${rc}    0    actions not extracted under /var/lib/nethserver/${module_id}
    ${output} =    Execute Command    systemctl is-active agent@${module_id}
    Should Be Equal    ${output}    active

The module may call the route actions of its node's proxy, and no other
    ${proxy} =    Execute Command    redis-cli --raw GET node/1/default_instance/nethvoice-proxy
    Skip If    not $proxy    no nethvoice-proxy on node 1: nothing to grant
    ${role} =    Execute Command    redis-cli --raw HGET roles/module/${module_id} module/${proxy}
    Should Be Equal    ${role}    routeadm
    ${granted} =    Execute Command    redis-cli --raw HKEYS roles/module/${module_id}
    Should Be Equal    ${granted.strip()}    module/${proxy}

A second instance on the same node is refused
    ${output}    ${rc} =    Execute Command    add-module ${IMAGE_URL} 1    return_rc=True
    Should Not Be Equal As Integers    ${rc}    0    a second instance was installed on node 1
    Should Contain    ${output}    already runs on node 1
    # add-module leaves the refused instance half-installed: remove it
    ${second} =    Execute Command
    ...    for m in $(redis-cli --raw HKEYS cluster/module_node | grep -x 'nethvoice-bypass[0-9]*' | grep -vx ${module_id}); do [ "$(redis-cli --raw HGET cluster/module_node $m)" = 1 ] && echo $m; done
    Run Keyword If    $second    Execute Command    remove-module --no-preserve ${second}
