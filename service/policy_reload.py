"""What reloads the policy without a restart, besides POST /admin/policy/reload: SIGHUP, and a
periodic check of the policy file (which is what reaches every worker of a multi-worker
server, and a Kubernetes ConfigMap mounted as a file)."""

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator

from algospeak import PolicyError
from service.policy import PolicyHolder

logger = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def policy_reloads(holder: PolicyHolder, check_s: float) -> AsyncIterator[None]:
    """While inside, and only when a policy file is configured: SIGHUP reloads it (where this
    process can take signals: the main thread of a server process), and every ``check_s``
    seconds (0: never) it is reloaded if its bytes changed. Both run off the event loop."""
    if holder.path is None:
        yield
        return
    loop = asyncio.get_running_loop()
    hangup = _on_hangup(loop, holder)
    watcher = loop.create_task(_watch(holder, check_s)) if check_s > 0 else None
    try:
        yield
    finally:
        if hangup:
            loop.remove_signal_handler(signal.SIGHUP)
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


def _on_hangup(loop: asyncio.AbstractEventLoop, holder: PolicyHolder) -> bool:
    """Install the SIGHUP handler; False where signals cannot be taken (not the main thread,
    as under a test client, or a platform without SIGHUP)."""
    if not hasattr(signal, "SIGHUP"):
        return False

    def reload() -> None:
        logger.info("SIGHUP: reloading the policy")
        loop.run_in_executor(None, _reload_quietly, holder)

    try:
        loop.add_signal_handler(signal.SIGHUP, reload)
    except (RuntimeError, ValueError, NotImplementedError) as exc:
        logger.debug("no SIGHUP reload in this process: %s", exc)
        return False
    return True


def _reload_quietly(holder: PolicyHolder) -> None:
    with contextlib.suppress(PolicyError):  # logged and kept for /info by reload
        holder.reload()


async def _watch(holder: PolicyHolder, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(holder.reload_if_changed)
        except Exception:
            # The watcher must outlive any surprise, or reloads would silently stop.
            logger.exception("policy file check failed")
