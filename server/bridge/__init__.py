"""MQTT ↔ domain: the connection, the batching dispatcher, commands with answers.

`runner.run_bridge(settings)` is the process; `dispatch.inject` feeds decoded messages to a
dispatcher without a broker (tests).
"""
