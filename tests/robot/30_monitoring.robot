*** Settings ***
Library             SSHLibrary
Resource            api.resource

*** Variables ***
${EXPORTER_URL}     http://$METRICS_ADDRESS:$TCP_PORT

*** Test Cases ***
The self-check timer and the exporter run
    ${timer} =    Execute Command    systemctl is-active ${module_id}-self-check.timer
    Should Be Equal    ${timer}    active
    ${exporter} =    Execute Command    systemctl is-active ${module_id}-exporter.service
    Should Be Equal    ${exporter}    active

self-check writes the gauges the exporter serves
    ${response} =    Run task    module/${module_id}/self-check    {"repair":false}
    Should Be Empty    ${response["repaired"]}
    ${metrics} =    Execute Command
    ...    runagent -m ${module_id} sh -c 'curl -sf ${EXPORTER_URL}$METRICS_PATH'
    Should Contain    ${metrics}    nethvoice_bypass_forwards{state="in_sync"}
    Should Contain    ${metrics}    nethvoice_bypass_last_check_timestamp_seconds

The exporter answers nothing but its own path
    ${code} =    Execute Command
    ...    runagent -m ${module_id} sh -c 'curl -s -o /dev/null -w "%{http_code}" ${EXPORTER_URL}/metrics'
    Should Be Equal    ${code}    404

The scrape target and the alert rules are published for the metrics module
    ${target} =    Execute Command    redis-cli --raw HGET module/${module_id}/metrics_targets bypass
    Should Contain    ${target}    module_id: ${module_id}
    ${rules} =    Execute Command    redis-cli --raw HGET module/${module_id}/metrics_alert_rules bypass
    Should Contain    ${rules}    NethVoiceBypassSelfCheckStale
