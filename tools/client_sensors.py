"""What kafka-python's own sensors cost a paced producer (not a test: a measurement to report).

``.venv/bin/python tools/client_sensors.py [RATE]`` (default 3,000 events/s): on a throwaway embedded broker,
four paced replays of 30,000 synthetic events, alternately with the clients' sensors on
(``metrics_enabled=True``, kafka-python's default) and off (``stream/clients.py``'s ``CLIENT_SENSORS``). For
each, the CPU share of a core that each of the process's busy threads used over 5 s in the middle of the
replay (the main thread encodes and hands records over, the producer's sender thread builds and sends the
requests), from ``/proc/self/task``.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from streamrec.bench.common import broker_session, synthetic_events
from streamrec.producers.replay import Pacing, replay
from streamrec.stream import clients
from streamrec.stream.settings import Settings

TICK = os.sysconf("SC_CLK_TCK")


def threads() -> dict[str, float]:
    out = {}
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/stat") as f:
            stat = f.read()
        name, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat.rsplit(")", 1)[1].split()
        out[f"{name}-{tid}"] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def main() -> None:
    rate = float(sys.argv[1]) if len(sys.argv) > 1 else 3000.0
    made = clients.producer
    with broker_session(Settings()) as s:
        log = synthetic_events(40_000, users=2_000, items=4_000, seed=0)
        replay(log[:5_000], s, Pacing())                                      # warm-up
        for sensors in (True, False, True, False):
            clients.producer = lambda st, sensors=sensors, **kw: made(st, **{**kw, "metrics_enabled": sensors})
            marks: dict[str, dict[str, float]] = {}

            def sample(marks: dict[str, dict[str, float]] = marks) -> None:
                time.sleep(3)
                marks["a"] = threads()
                time.sleep(5)
                marks["b"] = threads()

            sampler = threading.Thread(target=sample)
            sampler.start()
            replay(log[10_000:40_000], s, Pacing("rate", rate))
            sampler.join()
            busy = sorted((100 * (v - marks["a"].get(k, 0.0)) / 5 for k, v in marks["b"].items()), reverse=True)
            print(f"sensors {'on ' if sensors else 'off'}: busy threads "
                  + ", ".join(f"{b:.0f} %" for b in busy if b >= 1) + " of a core")
    clients.producer = made


if __name__ == "__main__":
    main()
