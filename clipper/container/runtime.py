"""The model-container runtime: one session with the query frontend, batches predicted in the thread
that reads them.

A session is a ZeroMQ DEALER on the frontend's RPC port (``CLIPPER_IP``/``CLIPPER_PORT``), or, given
``CLIPPER_RPC_SOCKET``, a connection to the frontend's Unix socket (:mod:`clipper.rpc.stream`: the
same messages without ZeroMQ's I/O thread); both are used the same way below.

Threads: the *session* thread owns the session's socket: it receives a batch, decodes it, calls the
function, encodes and sends the outputs, then reads the next one (no hand-off between threads: a
prediction message costs one wake-up of one thread, not three). It waits for the next message in a
blocking receive (ZeroMQ's; on the Unix socket a ``poll()`` for input, :class:`StreamChannel`), bounded by
the next heartbeat, the reconnect deadline and :data:`STOP_CHECK_S`, and heartbeats every
``heartbeat_interval`` while it waits. The *main* thread takes signals and, once per tick, keeps the
session alive while the function runs: when a batch has been in the function longer than
``heartbeat_interval`` it sends the heartbeat itself. ZeroMQ sockets are not thread-safe, but they
may change threads with a memory barrier in between: both threads touch the socket only while
holding ``_sock_lock``, and the session thread lets go of it for the time of the function call.

Sessions: when nothing at all has been received for ``reconnect_after`` seconds (the frontend
answers every heartbeat, so this means it is gone), the socket is closed and a new session starts
with a fresh socket, hence a new identity and a new replica id. Messages that queued up while a long
batch ran are read before the silence is judged.
A frontend that restarts on the same address is usually found sooner: ZMQ reconnects the socket by
itself (the Unix-socket session reconnects on its next heartbeat after the connection closed) and the
new frontend asks for metadata on the next heartbeat.

A failing prediction never ends the process: see :mod:`clipper.container.codec`; its reason
travels in the response's error frame when the frontend announced it (``ERROR_FRAME_SUPPORTED``
before asking for metadata, :mod:`clipper.rpc.protocol`), never inside an output. With ``rpc_keys``
(the cluster's replica keys, :mod:`clipper.rpc.auth`) every session socket is a CURVE client;
without them it speaks plain RPC v3 as the original container.

A *hung* prediction does end the process: the main thread checks the batch in the prediction
function once per tick, and when it has been there longer than ``predict_limit``
(``CLIPPER_PREDICT_TIMEOUT``) it logs why with every thread's stack and exits with
:data:`EXIT_HUNG`, so that whatever runs the container restarts it (the local supervisor, Docker's
restart policy, the Kubernetes Deployment). The query frontend has meanwhile stopped sending to the
replica after its ``--batch-timeout`` and reports it unhealthy. The same tick keeps
``CLIPPER_LIVENESS_FILE`` holding the epoch second until which the container counts as alive
(``predict_limit`` + 10 s ahead): a function that holds the GIL forever stops the main thread too,
and the Kubernetes exec liveness probe (``clipper_admin.kubernetes.objects``) sees the deadline pass.

SIGTERM/SIGINT stop the session; a batch still in the function then is abandoned (its thread is a
daemon): the process exits at once instead of waiting for the model.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
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
from clipper.rpc.stream import StreamChannel
from clipper.rpc.zmqio import recv_frames_wait, send_frames

log = logging.getLogger("clipper.container")

_HEARTBEAT = p.encode_heartbeat()

EXIT_HUNG = 4  # a batch stayed in the prediction function past CLIPPER_PREDICT_TIMEOUT
LIVENESS_GRACE_S = 10.0
#: The longest the session thread blocks in a receive before it looks at the stop flag again. A
#: blocking ZeroMQ receive costs a third of the system calls of a poll and a non-blocking drain,
#: which is most of a replica's fixed cost per message (``bench/replica.py``); pyzmq cannot
#: interrupt it from another thread, hence the bound.
STOP_CHECK_S = 0.1


class _ZmqChannel:
    """A session's DEALER to the frontend's RPC port (CURVE with the cluster's keys)."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], target: str, keys: RpcKeys | None) -> None:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # never queue heartbeats for a frontend that is not there
        try:
            if keys is not None:
                secure_client(sock, keys)
            sock.connect(target)
        except BaseException:
            sock.close(linger=0)  # an open socket would block the context's term() forever
            raise
        self.sock = sock

    def send(self, frames: list[bytes]) -> bool:
        try:
            send_frames(self.sock, frames)
            return True
        except zmq.Again:
            return False

    def recv(self, timeout: float) -> list[bytes] | None:
        self.sock.setsockopt(zmq.RCVTIMEO, max(1, int(timeout * 1000)))
        try:
            return recv_frames_wait(self.sock)
        except zmq.Again:
            return None

    def close(self) -> None:
        self.sock.close(linger=0)


_Channel = _ZmqChannel | StreamChannel


def exit_hung(message: str) -> None:
    """The default reaction to a hung prediction: say why, show where it is stuck, exit at once
    (``os._exit``: the stuck thread cannot be joined and must not delay the exit)."""
    log.error("%s", message)
    try:
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    except (OSError, ValueError, AttributeError):  # no usable stderr
        pass
    os._exit(EXIT_HUNG)


def schedule_as_batch() -> bool:
    """Schedule the calling thread, and the threads and processes it starts later, as
    ``SCHED_BATCH`` (Linux; no privilege needed); False where that is not available.

    A replica is batch work fed by the query frontend, often on the same cores. As an ordinary
    process, each batch's wake-up preempts whatever runs on the core it lands on, often the
    frontend itself, in the middle of the event loop that every other query waits on. A batch
    process keeps its share of the CPU (its nice value is unchanged) and runs at once on an idle
    core; on a busy one it waits for the running task to block or use up its slice instead of
    preempting it. Measured on 2 vCPUs (``bench/traffic.py``, a 90/10 split whose minority replica
    wakes ~1,400 times a second; three alternated runs each): the split's cost against a plain app
    8 to 11 % instead of 10 to 13 %, a plain app's throughput unchanged."""
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:
        return False
    try:  # every thread started so far too (by imports); later ones inherit it
        for tid in _thread_ids():
            os.sched_setscheduler(tid, policy, os.sched_param(0))
    except OSError as e:  # a seccomp profile or similar: scheduling stays as it was
        log.debug("cannot schedule as SCHED_BATCH: %s", e)
        return False
    return True


def _thread_ids() -> list[int]:
    """This process's threads (Linux), else the calling thread (0)."""
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


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
        self._last_heartbeat = 0.0  # monotonic time of the last heartbeat sent (either thread)
        self.registrations = 0
        self._failure: BaseException | None = None  # what ended the session thread, if anything
        self._stop = threading.Event()
        self._sock_lock = threading.Lock()  # held by whichever thread uses the socket
        self._ctx = zmq.Context()
        self._chan: _Channel | None = None  # the session's connection to the frontend
        self._logged_errors: set[str] = set()
        self._metadata = p.encode_new_container(config.model_name, config.model_version, config.input_type)

    # -- public --------------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT when run in the main thread)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        target = self.config.rpc_endpoint
        log.info(
            "model container %s:%s (%s) serving for %s",
            self.config.model_name,
            self.config.model_version,
            self.config.input_type,
            target,
        )
        if self.predict_limit is not None:
            self._write_liveness()
        sessions = threading.Thread(target=self._sessions, args=(target,), name="session", daemon=True)
        sessions.start()
        try:
            self._tend(sessions)
        finally:
            self._stop.set()
            while sessions.is_alive() and self._busy_since is None:
                sessions.join(0.05)  # the session closes its socket within STOP_CHECK_S
            if not sessions.is_alive():  # else a batch is in the model function: abandoned
                self._ctx.term()
            log.info("model container stopped")
        if self._failure is not None:
            raise self._failure

    def stop(self) -> None:
        """Thread-safe; ``run`` returns within :data:`STOP_CHECK_S` (or at once when a batch is in
        the model function: it is abandoned)."""
        self._stop.set()

    # -- main thread: signals, heartbeats during long batches, the watchdog --------------------

    def _tend(self, sessions: threading.Thread) -> None:
        interval = self.config.heartbeat_interval
        tick = min(interval / 2, 1.0)
        liveness_every = 1.0
        if self.predict_limit is not None:
            liveness_every = max(0.05, min(1.0, self.predict_limit / 4))
            tick = min(tick, liveness_every)
        liveness_at = time.monotonic()  # written by run() just before
        while sessions.is_alive() and not self._stop.wait(tick):
            since = self._busy_since
            now = time.monotonic()
            if since is not None and now - self._last_heartbeat >= interval:
                self._heartbeat_while_predicting(now, tick)
            limit = self.predict_limit
            if limit is None:
                continue
            if since is not None and (held := now - since) > limit:
                cfg = self.config
                self.on_hung(
                    f"model {cfg.model_name}:{cfg.model_version}: a batch of {self._busy_inputs} input(s) "
                    f"has been in the prediction function for {held:.1f} s, longer than "
                    f"CLIPPER_PREDICT_TIMEOUT ({limit:g} s): the function is hung; exiting with code "
                    f"{EXIT_HUNG} so that the replica is restarted (the stacks of every thread follow)"
                )
                return
            if now - liveness_at >= liveness_every:
                liveness_at = now
                self._write_liveness()

    def _heartbeat_while_predicting(self, now: float, wait: float) -> None:
        if not self._sock_lock.acquire(timeout=wait):
            return  # the batch just ended: the session thread heartbeats again itself
        try:
            if self._busy_since is not None and self._send_locked(_HEARTBEAT):
                self._last_heartbeat = now
        finally:
            self._sock_lock.release()

    # -- session thread ------------------------------------------------------------------------

    def _sessions(self, target: str) -> None:
        try:
            self._run_sessions(target)
        except BaseException as e:  # re-raised by run() in the main thread
            self._failure = e

    def _run_sessions(self, target: str) -> None:
        was_connected = True
        while not self._stop.is_set():
            got_any = self._session(target)
            if self._stop.is_set():
                break
            if got_any or was_connected:
                log.info(
                    "no message from the frontend for %.1f s: reconnecting with a new session",
                    self.config.reconnect_after,
                )
            was_connected = got_any

    def _session(self, target: str) -> bool:
        """One session (a DEALER, or a connection to the Unix socket); returns whether anything was
        received before it ended."""
        cfg = self.config
        self._announced = False
        chan: _Channel
        if cfg.rpc_socket is not None:  # a Unix socket has no CURVE (owner-only file)
            chan = StreamChannel(str(cfg.rpc_socket), spin=cfg.rpc_spin)
        else:
            try:
                chan = _ZmqChannel(self._ctx, target, self.rpc_keys)
            except zmq.ZMQError as e:
                log.error("cannot connect to %s: %s", target, e)
                self._stop.wait(cfg.reconnect_after)
                return False
        got_any = False
        last_recv = time.monotonic()
        lock = self._sock_lock
        lock.acquire()
        self._chan = chan
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if now - self._last_heartbeat >= cfg.heartbeat_interval:
                    # retried every 50 ms while the frontend is not connected
                    sent = self._send_locked(_HEARTBEAT)
                    self._last_heartbeat = now if sent else now - cfg.heartbeat_interval + 0.05
                wake_at = min(
                    self._last_heartbeat + cfg.heartbeat_interval,
                    last_recv + cfg.reconnect_after,
                    now + STOP_CHECK_S,
                )
                frames = chan.recv(wake_at - now)
                if frames is None:
                    if time.monotonic() - last_recv > cfg.reconnect_after:
                        return got_any
                    continue
                got_any = True
                self._handle(frames, time.perf_counter())
                last_recv = time.monotonic()  # after a long batch too: the frontend was waiting
            return got_any
        finally:
            self._chan = None
            lock.release()
            chan.close()

    def _send_locked(self, frames: list[bytes]) -> bool:
        """Send on the session's connection; the caller holds ``_sock_lock``."""
        chan = self._chan
        if chan is None:  # between sessions: nobody to send to
            return False
        return chan.send(frames)

    def _handle(self, frames: list[bytes], t_recv: float) -> None:
        """Handle one message from the frontend (a batch is predicted here); the caller holds the lock."""
        try:
            msg = p.decode_frontend_message(frames)
        except p.ProtocolError as e:
            log.warning("malformed message from the frontend dropped: %s", e)
            return
        if msg.rpc_version != p.RPC_VERSION:
            self._log_once(f"frontend speaks RPC version {msg.rpc_version}, expected {p.RPC_VERSION}")
        if isinstance(msg, p.PredictionRequest):
            if not self._send_locked(self._serve(msg, t_recv)):
                log.debug("response dropped: frontend not connected")
        elif msg.heartbeat_type == p.HeartbeatType.ERROR_FRAME_SUPPORTED:
            self._announced = True
        elif msg.heartbeat_type == p.HeartbeatType.REQUEST_CONTAINER_METADATA:
            self.error_frame, self._announced = self._announced, False
            self.registrations += 1
            log.info("frontend asked for metadata: registering")
            self._send_locked(self._metadata)

    def _serve(self, req: p.PredictionRequest, t_recv: float) -> list[bytes]:
        """Predict one batch; the socket is let go of while the function runs (the main thread
        heartbeats meanwhile)."""
        self._busy_inputs = len(req.inputs)
        self._busy_since = time.monotonic()
        self._sock_lock.release()
        try:
            outputs = self._predict(req, t_recv)
        except BaseException as e:  # noqa: BLE001 - the container must survive its own bugs too
            log.exception("internal error while predicting")
            outputs = [p.encode_error_output(f"Container error: {type(e).__name__}: {e}")] * len(req.inputs)
        finally:
            self._sock_lock.acquire()
            self._busy_since = None
        return p.encode_prediction_response(req.msg_id_frame, outputs, error_frame=self.error_frame)

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
                m.errors_total += 1
        if m is not None:
            m.record(
                n,
                (t_start - t_recv) * 1000,
                (t_parsed - t_start) * 1000,
                (t_done - t_parsed) * 1000,
                (time.perf_counter() - t_recv) * 1000,
            )
        return outputs

    def _errors(self, text: str, n: int, logged: bool = False) -> list[bytes | p.OutputError]:
        if not logged:
            self._log_once(text)
        if self.metrics is not None:
            self.metrics.pred_total += 1
            self.metrics.errors_total += 1
        return [p.encode_error_output(text)] * n

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
