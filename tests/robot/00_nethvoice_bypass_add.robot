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

The module may call the proxy's route actions
    ${proxies} =    Execute Command    redis-cli --raw KEYS 'module/nethvoice-proxy*/roles/routeadm'
    Skip If    not $proxies    no nethvoice-proxy in the cluster: nothing to grant
    FOR    ${key}    IN    @{proxies.split()}
        ${agent} =    Evaluate    $key.removesuffix("/roles/routeadm")
        ${role} =    Execute Command    redis-cli --raw HGET roles/module/${module_id} ${agent}
        Should Be Equal    ${role}    routeadm
    END
