"""The bridge's MQTT connection (paho-mqtt 2.x, MQTT 3.1.1 as the kiosks speak it, SPEC §1).

paho runs the network loop in its own thread; `on_message` only stamps the message and
hands it to the dispatcher's queue (CONVENTIONS: the MQTT side). Acknowledgements are
manual: a message is PUBACKed only after its batch is committed, so a bridge that dies
mid-batch loses nothing; with `clean_session=False` and a fixed client id the broker
redelivers the unacknowledged messages when the bridge comes back.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from firmware_protocol import topics
from server.config import Settings
from server.core.clock import clock
from server.core.errors import Unavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Incoming:
    """One uplink as received: raw, not yet decoded (decoding is the worker's job)."""

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 0
    received_ms: int = 0
    #: Which connection (session) delivered it; an ack is only valid on that connection.
    generation: int = 0


class PublishFailed(Unavailable):
    """The broker did not acknowledge a publish in time (or we are not connected)."""


class BridgeConnection:
    """One MQTT client: uplink subscriber (optionally) and acknowledged publisher.

    `shared=True` subscribes as `$share/<bridge_group>/umb/1/+/up/+` so several bridge
    processes split the uplink load (Mosquitto supports this for 3.1.1 clients); the
    embedded amqtt broker has no shared subscriptions, so the embedded bridge subscribes
    plainly. `subscribe=False` gives a publish-only connection (an API process sending
    commands).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        sink: Callable[[Incoming], None] | None = None,
        shared: bool = True,
        subscribe: bool = True,
        client_id: str | None = None,
        uplink_filter: str = topics.UPLINK_FILTER,
        keepalive_s: int = 30,
    ) -> None:
        self.settings = settings
        self.client_id = client_id or settings.bridge_id
        self._sink = sink
        self._subscribe = subscribe and sink is not None
        self.topic_filter = (
            topics.shared(uplink_filter, settings.bridge_group) if shared else uplink_filter
        )
        self._keepalive = keepalive_s
        self._generation = 0
        self.connected = threading.Event()
        #: Set once connected and (if subscribing) the broker granted the subscription.
        self.ready = threading.Event()
        self._sub_mid: int | None = None
        self._unsub_mid: int | None = None
        self._left = threading.Event()

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if settings.mqtt_username:
            client.username_pw_set(settings.mqtt_username, settings.mqtt_password or None)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_message = self._on_message
        self.client = client

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Connect in the background (retrying until the broker is up) and start the loop."""
        self.client.connect_async(
            self.settings.mqtt_host, self.settings.mqtt_port, keepalive=self._keepalive
        )
        self.client.loop_start()

    def wait_ready(self, timeout_s: float = 10.0) -> bool:
        return self.ready.wait(timeout_s)

    def leave(self, timeout_s: float = 5.0) -> bool:
        """Unsubscribe (and stay unsubscribed across reconnects): retiring a bridge for good.

        With a persistent session in a shared-subscription group, Mosquitto keeps sending
        a disconnected member its share and queues it until that client id returns; a
        bridge that leaves first hands its share to the other members instead. Never for a
        restart, and never the last bridge: with no subscriber, uplinks are dropped.
        """
        if not self._subscribe:
            return True
        self._subscribe = False
        self._left.clear()
        if not self.connected.is_set():
            return False
        _, self._unsub_mid = self.client.unsubscribe(self.topic_filter)
        return self._left.wait(timeout_s)

    def _on_unsubscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: object,
    ) -> None:
        if mid == self._unsub_mid:
            log.info("mqtt %s left %s", self.client_id, self.topic_filter)
            self._left.set()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()
        self.ready.clear()

    # ------------------------------------------------------------ paho callbacks (network thread)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        if reason_code.is_failure:
            log.warning("mqtt %s: connection refused: %s", self.client_id, reason_code)
            return
        self._generation += 1
        # Commands are small writes that follow reads: without TCP_NODELAY, Nagle holds
        # them until the broker's delayed ACK, adding up to ~40 ms to an unlock.
        sock = client.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.connected.set()
        log.info(
            "mqtt %s connected to %s:%d (session present: %s)",
            self.client_id,
            self.settings.mqtt_host,
            self.settings.mqtt_port,
            flags.session_present,
        )
        if self._subscribe:
            # Subscribing here, not once after start, restores the subscription on reconnect.
            _, self._sub_mid = client.subscribe(self.topic_filter, qos=1)
        else:
            self.ready.set()

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: object,
    ) -> None:
        if mid != self._sub_mid:
            return
        if any(rc.is_failure for rc in reason_codes):
            log.error("mqtt %s: subscription to %s refused", self.client_id, self.topic_filter)
            return
        log.info("mqtt %s subscribed to %s", self.client_id, self.topic_filter)
        self.ready.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: object,
    ) -> None:
        self.connected.clear()
        self.ready.clear()
        if reason_code.is_failure:
            log.warning("mqtt %s disconnected: %s (will reconnect)", self.client_id, reason_code)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        # Keep this tiny: it runs on paho's network thread.
        sink = self._sink
        if sink is None:
            return
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # rejected downstream as bad_topic, and still acked
            topic = "<invalid utf-8>"
        sink(
            Incoming(
                topic=topic,
                payload=bytes(msg.payload),
                mid=msg.mid,
                qos=msg.qos,
                received_ms=clock.now_ms(),
                generation=self._generation,
            )
        )

    # ------------------------------------------------------------ used by the worker / senders

    def ack(self, item: Incoming) -> None:
        """PUBACK a message once its effects are committed.

        Only on the connection that delivered it: after a reconnect the broker redelivers
        the unacknowledged message under a packet id that may since mean another message.
        """
        if item.qos == 0 or item.generation != self._generation:
            return
        self.client.ack(item.mid, item.qos)

    def publish_and_wait(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        timeout_s: float = 5.0,
    ) -> None:
        """Publish and block until the broker acknowledges it (PUBACK for QoS 1)."""
        if not self.connected.is_set():
            raise PublishFailed("not connected to the MQTT broker", topic=topic)
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        try:
            info.wait_for_publish(timeout=timeout_s)
        except (RuntimeError, ValueError) as e:
            raise PublishFailed(f"publish failed: {e}", topic=topic) from e
        if not info.is_published():
            raise PublishFailed("broker did not acknowledge the publish in time", topic=topic)
