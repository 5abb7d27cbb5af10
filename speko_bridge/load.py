"""Measured load, and the rule that turns new sessions away before everyone degrades.

A fixed ``SPEKO_MAX_SESSIONS`` cannot say when a process is full: what a session costs
depends on its sample rates, its provider, the machine and whatever else runs on it. Past
the point where the event loop is busy all the time, every admitted session's audio waits
behind every other's, and latency grows for all of them at once (issue 23 saw a p99 of
13 s at 200 sessions on one core). So admission also asks this module whether the process
is overloaded, measured two ways:

- **event-loop lag**: how late a timer fires (the overshoot of ``asyncio.sleep``). Every
  audio frame of every session waits about this long before its callback runs, whatever
  the cause (our own work, or another process taking the core).
- **process CPU**: CPU seconds per wall second of this process (``time.process_time``),
  as a fraction of one core: the event loop runs on one, so near 1.0 there is no room for
  another session whatever the lag says right now.

:class:`LoadGauge` is the rule, sans-IO: it is fed samples and says ``overloaded``. Both
signals are smoothed (exponential moving averages, :data:`LAG_SMOOTHING`,
:data:`CPU_SMOOTHING`) so one late timer (a GC pass, a burst of handshakes) does not refuse
anybody, and the rule has
hysteresis: it enters overload when either smoothed signal reaches its limit and leaves
only when both are back under a lower mark (:data:`LAG_LEAVE_FRACTION`,
:data:`CPU_LEAVE_FRACTION` of the limits), so admission does not flap at the boundary.
:class:`LoadMonitor` is the task that samples the running loop every
:data:`SAMPLE_INTERVAL_SECONDS` and feeds a gauge (started with the app, ``app.py``).

**Arrivals the readings do not show yet.** A session admitted now costs CPU only once it
streams, and the smoothed reading shows it a few hundred ms after that: offered a burst, a
rule on readings alone admits everyone who arrives in that gap (issue 23 measured 29
sessions past the limit from 100 arriving over 4 s). So the gauge also counts what it
admitted in the last :data:`ARRIVAL_SECONDS` (:meth:`LoadGauge.arrived`, keyed by session,
so a mint and its socket count once), each at the CPU a session costs here (the smoothed
CPU over the live sessions, learned while nobody is arriving and the number of live
sessions has not changed for :data:`STEADY_SECONDS`: the reading lags a change, so a cost
taken while sessions end would be the old load over the few left), weighted down linearly
as its cost shows. A new session is refused when the reading plus those arrivals plus
itself would reach the CPU limit (:meth:`LoadGauge.refusing`): the excess of a burst is
turned away when it comes, not a second later. A process with no session live or arriving
takes one whatever the cost it learned says (only overload refuses it): the estimate is
only checked, and corrected, by a session running.

While overloaded: a new session's socket is closed with 4029 ``overloaded`` *before* its
token is consumed (the client may retry the same token later or on another replica),
``POST /v1/sessions`` answers 503 ``overloaded`` with ``Retry-After``, and ``/readyz``
answers 503 so a load balancer sends new sessions elsewhere. Sessions already admitted
are never closed for load, and a resume (a session live here taking back its client) is
not new load and is always admitted. The limits are ``SPEKO_OVERLOAD_LAG_MS`` and
``SPEKO_OVERLOAD_CPU_PERCENT`` (docs/configuration.md says how the defaults were chosen).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

log = logging.getLogger("speko_bridge.load")

#: How often the loop is sampled. Short enough that a ramp of new sessions is seen within a
#: few hundred ms; one timer wake-up per 100 ms costs nothing measurable.
SAMPLE_INTERVAL_SECONDS = 0.1
#: Weight of a new lag sample in its moving average: with 10 samples a second, a step
#: change is ~90% seen after 1 s (0.8 ** 10 = 0.11), and a single late timer (a GC pass, a
#: burst of handshakes) moves the average by a fifth of its lateness.
LAG_SMOOTHING = 0.2
#: The same for CPU, which is steadier (a 100 ms window of ``process_time`` already averages
#: thousands of callbacks) and must be seen quickly: new sessions arriving at tens a second
#: add load before a slow average shows it, and every one admitted meanwhile is overshoot.
#: A step is ~90% seen after 0.3 s; one busy sample alone moves it half way.
CPU_SMOOTHING = 0.5
#: Overload ends when the smoothed lag is under this fraction of its limit (and CPU under
#: its own mark). Lag is bursty: half the limit is clearly below the knee.
LAG_LEAVE_FRACTION = 0.5
#: The same for CPU, which moves smoothly with the number of sessions: 85% of the limit is
#: about the CPU of a sixth fewer sessions, so a few sessions must end before new ones
#: are taken again, instead of one in, one out at the boundary.
CPU_LEAVE_FRACTION = 0.85
#: How long an admitted session counts as arriving (its cost not yet in the CPU reading),
#: linearly less over that time: a session streams within tens of ms of its socket's
#: opening (a real provider's connect adds a few hundred), and the smoothed reading shows a
#: step ~90% within 0.3 s of it.
ARRIVAL_SECONDS = 1.0
#: How long the number of live sessions must stay the same before the reading over it is
#: taken as their cost: the smoothed CPU shows a step 97% after 5 samples (0.5 ** 5).
STEADY_SECONDS = 0.5
#: ``Retry-After`` of a mint refused for load: sessions last minutes, so the load a refusal
#: sees does not clear in one second; a few seconds keeps retries from adding to it.
RETRY_AFTER_SECONDS = 5


class LoadGauge:
    """Smoothed load readings and the overload rule with hysteresis. Sans-IO: feed it
    :meth:`observe` samples, ask :attr:`overloaded`. A limit of ``None`` (or 0) turns that
    signal's rule off; the reading is still kept."""

    def __init__(self, lag_limit_seconds: float | None, cpu_limit: float | None, *,
                 lag_smoothing: float = LAG_SMOOTHING, cpu_smoothing: float = CPU_SMOOTHING) -> None:
        for smoothing in (lag_smoothing, cpu_smoothing):
            if not 0 < smoothing <= 1:
                raise ValueError(f"smoothing must be in (0, 1], got {smoothing}")
        self.lag_limit = lag_limit_seconds or None
        self.cpu_limit = cpu_limit or None
        self._lag_alpha, self._cpu_alpha = lag_smoothing, cpu_smoothing
        self.lag: float = 0.0  # smoothed, seconds
        self.cpu: float = 0.0  # smoothed, fraction of one core
        self._seen = False
        self.overloaded = False
        self.reason: str | None = None
        #: CPU one session costs here (fraction of a core), learned by :meth:`observe`;
        #: None until sessions have run while nobody was arriving.
        self.per_session: float | None = None
        # session id -> when it was admitted, oldest first; and the sum of those times, so
        # that a burst of thousands is weighed in O(1) per new session. An OrderedDict: its
        # oldest entry is found in O(1) after others were removed; a dict's first entry is
        # found by skipping every slot removed before it (bench/micro.py: 4.8 us per
        # arrival at 4,000 a second and 15.5 us at 16,000 with a dict, 1.6-1.8 us now).
        self._arrivals: OrderedDict[str, float] = OrderedDict()
        self._arrived_sum = 0.0
        self._sessions = 0  # live at the latest sample
        self._sessions_since: float | None = None  # when that number was first seen

    def observe(self, lag_seconds: float, cpu: float, sessions: int = 0,
                now: float | None = None) -> bool:
        """Take one sample (timer lateness in seconds, CPU as a fraction of one core, the
        sessions live, the monotonic time); True if the overload state changed."""
        lag_seconds, cpu = max(0.0, lag_seconds), max(0.0, cpu)
        if not self._seen:
            self.lag, self.cpu, self._seen = lag_seconds, cpu, True
        else:
            self.lag += self._lag_alpha * (lag_seconds - self.lag)
            self.cpu += self._cpu_alpha * (cpu - self.cpu)
        if now is not None:
            self._forget(now)
        if sessions != self._sessions or self._sessions_since is None:
            self._sessions, self._sessions_since = sessions, now
        # the reading shows every session live, and only them: none arriving, and none
        # ended so recently that their CPU is still in the average
        steady = now is None or now - self._sessions_since >= STEADY_SECONDS
        if sessions > 0 and not self._arrivals and steady:
            self.per_session = self.cpu / sessions
        was = self.overloaded
        if not was:
            self.reason = self._over()
            self.overloaded = self.reason is not None
        elif self._under():
            self.overloaded, self.reason = False, None
        return self.overloaded != was

    def _over(self) -> str | None:
        """Why this reading is overload, or None."""
        if self.lag_limit is not None and self.lag >= self.lag_limit:
            return (f"event-loop lag {self.lag * 1000:.1f} ms is over the limit of "
                    f"{self.lag_limit * 1000:g} ms")
        if self.cpu_limit is not None and self.cpu >= self.cpu_limit:
            return f"process CPU {self.cpu:.0%} of a core is over the limit of {self.cpu_limit:.0%}"
        return None

    def arrived(self, session_id: str, now: float) -> None:
        """A session was admitted (minted, or its socket opened) at ``now``: count its cost
        until the reading shows it. The same id again (its socket after its mint) is one."""
        self.left(session_id)
        self._arrivals[session_id] = now  # last in, so the oldest stay first
        self._arrived_sum += now

    def left(self, session_id: str) -> None:
        """A session counted by :meth:`arrived` did not start after all (its mint or its
        token was refused later): it adds no load."""
        when = self._arrivals.pop(session_id, None)
        if when is not None:
            self._arrived_sum -= when

    def _forget(self, now: float) -> None:
        arrivals = self._arrivals
        while arrivals:
            if now - arrivals[next(iter(arrivals))] < ARRIVAL_SECONDS:
                return
            self._arrived_sum -= arrivals.popitem(last=False)[1]
        self._arrived_sum = 0.0  # none left: no rounding carried into the next burst

    def arriving(self, now: float) -> float:
        """CPU of the sessions admitted too recently to show in the reading (fraction of a
        core; 0 until a session's cost is known): each weighs 1 when admitted, 0 after
        :data:`ARRIVAL_SECONDS`."""
        if self.per_session is None:
            return 0.0
        self._forget(now)
        count = len(self._arrivals)
        weight = count - (count * now - self._arrived_sum) / ARRIVAL_SECONDS
        return weight * self.per_session

    def refusing(self, now: float) -> str | None:
        """Why a new session is refused at ``now``, or None: overloaded, or the CPU reading
        plus the sessions arriving plus this one would reach the CPU limit."""
        if self.overloaded:
            return self.reason
        if self.cpu_limit is None or self.per_session is None:
            return None
        if not self._sessions and not self._arrivals:
            return None  # idle: a session is the only way to check the cost learned
        ahead = self.cpu + self.arriving(now) + self.per_session
        if ahead < self.cpu_limit:
            return None
        return (f"process CPU {self.cpu:.0%} of a core and {len(self._arrivals)} sessions starting "
                f"would be over the limit of {self.cpu_limit:.0%}")

    def _under(self) -> bool:
        """Both signals are back under their leave marks."""
        lag_ok = self.lag_limit is None or self.lag < self.lag_limit * LAG_LEAVE_FRACTION
        cpu_ok = self.cpu_limit is None or self.cpu < self.cpu_limit * CPU_LEAVE_FRACTION
        return lag_ok and cpu_ok


class LoadMonitor:
    """Samples the running event loop's lag and this process's CPU into a :class:`LoadGauge`
    and the metrics; :meth:`run` is the app's background task."""

    def __init__(self, gauge: LoadGauge, metrics, sessions: Callable[[], int] = lambda: 0,
                 interval: float = SAMPLE_INTERVAL_SECONDS) -> None:
        self.gauge = gauge
        self.metrics = metrics
        self.sessions = sessions
        self.interval = interval

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.interval
        wall, cpu = time.monotonic(), time.process_time()
        while True:
            asked = loop.time()
            await asyncio.sleep(interval)
            lag = loop.time() - asked - interval
            now, cpu_now = time.monotonic(), time.process_time()
            share = (cpu_now - cpu) / max(now - wall, 1e-6)
            wall, cpu = now, cpu_now
            try:
                self._record(lag, share)
            except Exception:  # a monitor that died would leave admission stuck where it was
                log.exception("load sample not recorded")

    def _record(self, lag: float, share: float) -> None:
        gauge, metrics = self.gauge, self.metrics
        if gauge.observe(lag, share, self.sessions(), time.monotonic()):
            if gauge.overloaded:
                log.warning("overloaded, refusing new sessions: %s", gauge.reason)
            else:
                log.warning("load back to normal, admitting new sessions")
        metrics.loop_lag.set(gauge.lag)
        metrics.process_cpu.set(gauge.cpu)
        metrics.overloaded.set(1 if gauge.overloaded else 0)
