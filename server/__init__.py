"""The cloud side of the umbrella network: API, MQTT bridge, scheduler."""
