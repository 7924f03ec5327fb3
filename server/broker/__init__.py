"""MQTT broker credentials and configuration (SPEC §1: each kiosk has its own credentials).

The same password file and ACL file drive both brokers: Mosquitto in production and the
in-process amqtt broker of the embedded default (`embedded.py`).
"""
