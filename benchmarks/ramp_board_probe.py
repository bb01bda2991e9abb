"""A participant and the website, in ramp-board's environment: submit, then watch the leaderboard.

    <ramp-board python> ramp_board_probe.py <deployment config.yml> <event name>

Reads one JSON request per line on stdin, answers one JSON line each:

    {"submit": ["alice", "lat_000", "/path/to/folder"]}  -> {"at": <time.time()>}
        ramp-database's own add_submission, as the website's submit does;
    {"visible": ["lat_000", ...], "timeout": 60}          -> {"at": {"lat_000": <time>, ...}}
        polls the event's private leaderboard as the website reads it
        (``Event.private_leaderboard_html``, which ramp-database's
        ``update_leaderboards`` writes) every 20 ms until every name is in it.

Not imported by ramp-fleet: ramp_database lives only in that environment.
"""

import json
import sys
import time

from ramp_database.model import Event
from ramp_database.tools.submission import add_submission
from ramp_database.utils import session_scope
from ramp_utils import read_config


def main():
    config, event_name = sys.argv[1], sys.argv[2]
    database = read_config(config, filter_section="sqlalchemy")
    with session_scope(database) as session:
        for line in sys.stdin:
            request = json.loads(line)
            if "submit" in request:
                team, name, folder = request["submit"]
                add_submission(session, event_name, team, name, folder)
                session.commit()
                answer = {"at": time.time()}
            else:
                names, seen = set(request["visible"]), {}
                deadline = time.time() + request.get("timeout", 600)
                while len(seen) < len(names) and time.time() < deadline:
                    session.expire_all()
                    html = session.query(Event).filter_by(name=event_name).one() \
                        .private_leaderboard_html or ""
                    now = time.time()
                    for name in names - set(seen):
                        if name in html:
                            seen[name] = now
                    session.rollback()  # a fresh snapshot at the next look
                    time.sleep(0.02)
                answer = {"at": seen}
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
