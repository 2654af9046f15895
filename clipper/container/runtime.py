"""The model-container runtime: one DEALER session with the query frontend, batches predicted in a
worker thread.

Threads: the main thread owns the ZMQ socket, heartbeats every ``heartbeat_interval`` (always, also
while the prediction function runs) and sends responses; one worker thread decodes inputs, calls the
function and encodes outputs, one request at a time in arrival order. Results come back through a
deque plus a wake-up socket pair that the main thread polls with the ZMQ socket.

Sessions: when nothing at all has been received for ``reconnect_after`` seconds (the frontend
answers every heartbeat, so this means it is gone), the socket is closed and a new session starts
with a fresh socket, hence a new identity and a new replica id. Work of an old session is dropped.
A frontend that restarts on the same address is usually found sooner: ZMQ reconnects the socket by
itself and the new frontend asks for metadata on the next heartbeat.

A failing prediction never ends the process: see :mod:`clipper.container.codec`; its reason
travels in the response's error frame when the frontend announced it (``ERROR_FRAME_SUPPORTED``
before asking for metadata, :mod:`clipper.rpc.protocol`), never inside an output. With ``rpc_keys``
(the cluster's replica keys, :mod:`clipper.rpc.auth`) every session socket is a CURVE client;
without them it speaks plain RPC v3 as the original container.

A *hung* prediction does end the process: a watchdog thread checks the batch in the prediction
function once a second, and when it has been there longer than ``predict_limit``
(``CLIPPER_PREDICT_TIMEOUT``) it logs why with every thread's stack and exits with
:data:`EXIT_HUNG`, so that whatever runs the container restarts it (the local supervisor, Docker's
restart policy, the Kubernetes Deployment). The query frontend has meanwhile stopped sending to the
replica after its ``--batch-timeout`` and reports it unhealthy. The same thread keeps
``CLIPPER_LIVENESS_FILE`` holding the epoch second until which the container counts as alive
(``predict_limit`` + 10 s ahead): a function that holds the GIL forever stops the watchdog too, and
the Kubernetes exec liveness probe (``clipper_admin.kubernetes.objects``) sees the deadline pass.
"""

from __future__ import annotations

import collections
import faulthandler
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from clipper.container.codec import InputDecodeError, decode_inputs, encode_outputs
from clipper.container.config import ContainerConfig
from clipper.container.loader import PredictFunction
from clipper.container.metrics import ContainerMetrics
from clipper.datatypes import InputType
from clipper.rpc import protocol as p
from clipper.rpc.auth import RpcKeys, secure_client
from clipper.rpc.zmqio import recv_frames, send_frames

log = logging.getLogger("clipper.container")

_HEARTBEAT = p.encode_heartbeat()

EXIT_HUNG = 4  # a batch stayed in the prediction function past CLIPPER_PREDICT_TIMEOUT
LIVENESS_GRACE_S = 10.0


def exit_hung(message: str) -> None:
    """The default reaction to a hung prediction: say why, show where it is stuck, exit at once
    (``os._exit``: the stuck thread cannot be joined and must not delay the exit)."""
    log.error("%s", message)
    try:
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    except (OSError, ValueError, AttributeError):  # no usable stderr
        pass
    os._exit(EXIT_HUNG)


class ContainerRuntime:
    def __init__(
        self,
        predict: PredictFunction,
        config: ContainerConfig,
        metrics: ContainerMetrics | None = None,
        *,
        predict_limit: float | None = None,
        on_hung: Callable[[str], None] = exit_hung,
        rpc_keys: RpcKeys | None = None,
    ) -> None:
        """``predict_limit``: seconds one batch may take (None: no watchdog); ``on_hung`` is called
        once with the reason when a batch takes longer (default: log and exit with :data:`EXIT_HUNG`)."""
        self.predict = predict
        self.config = config
        self.rpc_keys = rpc_keys
        # Whether the frontend of this session reads the error frame (it announced it before asking
        # for metadata); errors go as output text otherwise, the original frontend's only channel.
        self.error_frame = False
        self._announced = False
        self.metrics = metrics
        self.predict_limit = predict_limit
        self.on_hung = on_hung
        self._busy_since: float | None = None  # monotonic start of the batch in the function
        self._busy_inputs = 0
        self.generation = 0  # session number; results of older sessions are dropped
        self.registrations = 0
        self._stop = threading.Event()
        self._requests: queue.SimpleQueue[tuple[int, p.PredictionRequest, float] | None] = queue.SimpleQueue()
        self._results: collections.deque[tuple[int, list[bytes]]] = collections.deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._ctx = zmq.Context()
        self._sock: zmq.Socket[bytes] | None = None
        self._logged_errors: set[str] = set()
        self._metadata = p.encode_new_container(config.model_name, config.model_version, config.input_type)

    # -- public --------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT when run in the main thread)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        worker = threading.Thread(target=self._work, name="predict", daemon=True)
        worker.start()
        if self.predict_limit is not None:
            self._write_liveness()
            threading.Thread(target=self._watchdog, name="watchdog", daemon=True).start()
        target = f"tcp://{self.config.host}:{self.config.port}"
        log.info(
            "model container %s:%s (%s) serving for %s",
            self.config.model_name,
            self.config.model_version,
            self.config.input_type,
            target,
        )
        was_connected = True
        try:
            while not self._stop.is_set():
                self.generation += 1
                got_any = self._session(target)
                if self._stop.is_set():
                    break
                if got_any or was_connected:
                    log.info(
                        "no message from the frontend for %.1f s: reconnecting with a new session",
                        self.config.reconnect_after,
                    )
                was_connected = got_any
        finally:
            self._requests.put(None)
            if self._sock is not None:
                self._sock.close(linger=0)
                self._sock = None
            self._ctx.term()
            self._wake_r.close()
            self._wake_w.close()
            log.info("model container stopped")

    def stop(self) -> None:
        """Thread-safe; ``run`` returns within moments."""
        self._stop.set()
        self._wake()

    # -- session (main thread) -----------------------------------------------------------------

    def _session(self, target: str) -> bool:
        """One DEALER session; returns whether anything was received before it ended."""
        cfg = self.config
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # never queue heartbeats for a frontend that is not there
        if self.rpc_keys is not None:
            try:
                secure_client(sock, self.rpc_keys)
            except BaseException:
                sock.close(linger=0)  # an open socket would block the context's term() forever
                raise
        self._sock = sock
        self._announced = False
        try:
            sock.connect(target)
        except zmq.ZMQError as e:
            log.error("cannot connect to %s: %s", target, e)
            self._stop.wait(cfg.reconnect_after)
            sock.close(linger=0)
            self._sock = None
            return False
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r.fileno(), zmq.POLLIN)
        got_any = False
        last_recv = time.monotonic()
        next_hb = last_recv  # heartbeat at once
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_hb:
                    next_hb = now + (cfg.heartbeat_interval if self._send(_HEARTBEAT) else 0.05)
                if now - last_recv > cfg.reconnect_after:
                    return got_any
                timeout = max(0.0, min(next_hb, last_recv + cfg.reconnect_after) - now)
                events = poller.poll(int(timeout * 1000))  # what pyzmq does with a float
                for what, _ in events:
                    if what is sock:
                        if self._receive(sock):
                            got_any = True
                            last_recv = time.monotonic()
                    else:
                        self._drain_wake()
                self._flush_results()
            return got_any
        finally:
            sock.close(linger=0)
            self._sock = None

    def _send(self, frames: list[bytes]) -> bool:
        sock = self._sock
        if sock is None:  # between sessions: nobody to send to
            return False
        try:
            send_frames(sock, frames)
            return True
        except zmq.Again:
            return False

    def _receive(self, sock: zmq.Socket[bytes]) -> bool:
        got = False
        while True:
            try:
                frames = recv_frames(sock)
            except zmq.Again:
                return got
            got = True
            t_recv = time.perf_counter()
            try:
                msg = p.decode_frontend_message(frames)
            except p.ProtocolError as e:
                log.warning("malformed message from the frontend dropped: %s", e)
                continue
            if msg.rpc_version != p.RPC_VERSION:
                self._log_once(f"frontend speaks RPC version {msg.rpc_version}, expected {p.RPC_VERSION}")
            if isinstance(msg, p.PredictionRequest):
                self._requests.put((self.generation, msg, t_recv))
            elif msg.heartbeat_type == p.HeartbeatType.ERROR_FRAME_SUPPORTED:
                self._announced = True
            elif msg.heartbeat_type == p.HeartbeatType.REQUEST_CONTAINER_METADATA:
                self.error_frame, self._announced = self._announced, False
                self.registrations += 1
                log.info("frontend asked for metadata: registering")
                self._send(self._metadata)

    def _flush_results(self) -> None:
        while self._results:
            generation, frames = self._results.popleft()
            if generation == self.generation and not self._send(frames):
                log.debug("response dropped: frontend not connected")

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # full (a wake-up is pending anyway) or closed
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _on_signal(self, signum: int, _frame: Any) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        self.stop()

    def _log_once(self, message: str, exc_info: bool = False) -> None:
        if message in self._logged_errors:
            log.debug("%s", message)
            return
        if len(self._logged_errors) < 1000:
            self._logged_errors.add(message)
        log.warning("%s", message, exc_info=exc_info)

    # -- worker thread -------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            item = self._requests.get()
            if item is None:
                return
            generation, req, t_recv = item
            if generation != self.generation:
                continue  # the session it came from is gone
            self._busy_inputs = len(req.inputs)
            self._busy_since = time.monotonic()
            try:
                outputs = self._predict(req, t_recv)
            except BaseException as e:  # noqa: BLE001 - the worker must survive its own bugs too
                log.exception("internal error while predicting")
                outputs = [p.encode_error_output(f"Container error: {type(e).__name__}: {e}")] * len(
                    req.inputs
                )
            finally:
                self._busy_since = None
            frames = p.encode_prediction_response(req.msg_id_frame, outputs, error_frame=self.error_frame)
            self._results.append((generation, frames))
            self._wake()

    def _predict(self, req: p.PredictionRequest, t_recv: float) -> list[bytes | p.OutputError]:
        n = len(req.inputs)
        m = self.metrics
        t_start = time.perf_counter()
        expected = self.config.input_type
        if req.request_type != p.RequestType.PREDICT:
            return self._errors(f"Unsupported request type {req.request_type}", n)
        if req.input_type != expected:
            got = InputType(req.input_type).canonical if req.input_type < 5 else str(req.input_type)
            return self._errors(f"Input type mismatch: the model takes {expected}, the request has {got}", n)
        try:
            inputs = decode_inputs(expected, req.inputs)
        except InputDecodeError as e:
            return self._errors(f"Bad input: {e}", n)
        t_parsed = time.perf_counter()
        try:
            result = self.predict(inputs)
        except BaseException as e:  # noqa: BLE001 - a model must never end the container
            text = f"Model error: {type(e).__name__}: {e}"
            self._log_once(text, exc_info=True)
            return self._errors(text, n, logged=True)
        t_done = time.perf_counter()
        outputs = encode_outputs(result, n)
        if n and type(err := outputs[0]) is p.OutputError:
            self._log_once(err.reason)
            if m is not None:
                m.errors_total.inc()
        if m is not None:
            m.pred_total.inc()
            m.inputs_total.inc(n)
            m.recv_time_ms.observe((t_start - t_recv) * 1000)
            m.parse_time_ms.observe((t_parsed - t_start) * 1000)
            m.handle_time_ms.observe((t_done - t_parsed) * 1000)
            m.end_to_end_latency_ms.observe((time.perf_counter() - t_recv) * 1000)
        return outputs

    def _errors(self, text: str, n: int, logged: bool = False) -> list[bytes | p.OutputError]:
        if not logged:
            self._log_once(text)
        if self.metrics is not None:
            self.metrics.pred_total.inc()
            self.metrics.errors_total.inc()
        return [p.encode_error_output(text)] * n

    # -- watchdog thread -----------------------------------------------------------------------

    def _watchdog(self) -> None:
        limit = self.predict_limit
        assert limit is not None
        tick = max(0.05, min(1.0, limit / 4))
        while not self._stop.wait(tick):
            since = self._busy_since
            if since is not None and (held := time.monotonic() - since) > limit:
                cfg = self.config
                self.on_hung(
                    f"model {cfg.model_name}:{cfg.model_version}: a batch of {self._busy_inputs} input(s) has "
                    f"been in the prediction function for {held:.1f} s, longer than CLIPPER_PREDICT_TIMEOUT "
                    f"({limit:g} s): the function is hung; exiting with code {EXIT_HUNG} so that the replica "
                    "is restarted (the stacks of every thread follow)"
                )
                return
            self._write_liveness()

    def _write_liveness(self) -> None:
        path = self.config.liveness_file
        if path is None or self.predict_limit is None:
            return
        deadline = int(time.time() + self.predict_limit + LIVENESS_GRACE_S)
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(f"{deadline}\n")
            os.replace(tmp, path)  # a probe never reads a half-written number
        except OSError as e:
            self._log_once(f"cannot write the liveness file {path}: {e}")
