"""A Verdict participant in Python: accounts in SQLite, staged per transaction, committed or
aborted as the coordinator decides.

It serves verdict.v1.Participant (Prepare, Commit, Abort) and verdict.v1.Bank (OpenAccount,
GetBalance, Apply: the application's side), so any tool that drives a Verdict bank drives it.
Everything it promises lives in one SQLite file, forced to disk (synchronous=FULL) before it
answers: a YES vote together with the staged changes, a commit before its acknowledgement.
A resolver thread asks the coordinator's Resolve about transactions left prepared without a
decision, including those found after a restart.

    python participant.py --listen 127.0.0.1:7600 --db stock.sqlite3 \
        --coordinator http://127.0.0.1:7400 --name restaurant
"""

import argparse
import json
import logging
import signal
import sqlite3
import sys
import threading
import time
import uuid
from concurrent import futures
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent / "gen"))
from verdict.v1 import bank_pb2, bank_pb2_grpc  # noqa: E402
from verdict.v1 import coordinator_pb2, coordinator_pb2_grpc  # noqa: E402
from verdict.v1 import participant_pb2, participant_pb2_grpc  # noqa: E402

log = logging.getLogger("python-participant")

# The furthest ahead an application may say a transaction's deadline is.
MAX_DEADLINE_AHEAD_MS = 24 * 3600 * 1000
# The most decisions one Decide may carry (participant.proto).
MAX_DECISIONS = 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id      TEXT PRIMARY KEY,
    balance INTEGER NOT NULL CHECK (balance >= 0)
);
-- One row per transaction this participant has heard of. state: staged, prepared, committed,
-- aborted. endpoints: the coordinator nodes to ask Resolve (JSON list), from Prepare.
CREATE TABLE IF NOT EXISTS txns (
    id          TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    endpoints   TEXT NOT NULL DEFAULT '[]',
    prepared_at REAL
);
CREATE TABLE IF NOT EXISTS staged (
    txn_id  TEXT NOT NULL REFERENCES txns(id),
    account TEXT NOT NULL REFERENCES accounts(id),
    delta   INTEGER NOT NULL,
    PRIMARY KEY (txn_id, account)
);
"""


class Refused(Exception):
    """A request refused with a gRPC status code and a message that says what to do."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def txn_id(text):
    """The transaction id, or INVALID_ARGUMENT."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                      f"txn_id {text!r} is not a Verdict transaction id (a UUID)")


class Store:
    """The SQLite file. One connection behind a lock: every operation is one transaction."""

    def __init__(self, path):
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # committed means on disk
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()

    def transaction(self, work):
        """Runs work(db) in one SQLite transaction, committed (and synced) before returning."""
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                result = work(self.db)
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
            return result


def state_of(db, txn):
    row = db.execute("SELECT state FROM txns WHERE id = ?", (txn,)).fetchone()
    return row[0] if row else None


def held(db, account):
    """What prepared transactions would take out of the account."""
    row = db.execute(
        "SELECT COALESCE(SUM(-s.delta), 0) FROM staged s JOIN txns t ON t.id = s.txn_id "
        "WHERE s.account = ? AND t.state = 'prepared' AND s.delta < 0", (account,)).fetchone()
    return row[0]


class Participant:
    def __init__(self, store, name, endpoint, coordinators, shortage):
        self.store = store
        self.name = name
        self.endpoint = endpoint
        self.coordinators = coordinators
        self.shortage = shortage

    # --- the application's side (verdict.v1.Bank) ---------------------------------------------

    def open_account(self, account, balance):
        if not 1 <= len(account.encode()) <= 64:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "account: give 1 to 64 bytes")
        if balance < 0:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "balance: not negative")

        def work(db):
            if db.execute("SELECT 1 FROM accounts WHERE id = ?", (account,)).fetchone():
                raise Refused(grpc.StatusCode.ALREADY_EXISTS, f"account {account!r} already exists")
            db.execute("INSERT INTO accounts (id, balance) VALUES (?, ?)", (account, balance))
        self.store.transaction(work)

    def balance(self, account):
        def work(db):
            row = db.execute("SELECT balance FROM accounts WHERE id = ?", (account,)).fetchone()
            if not row:
                raise Refused(grpc.StatusCode.NOT_FOUND, f"account {account!r} does not exist")
            return row[0], held(db, account)
        return self.store.transaction(work)

    def apply(self, txn, account, delta, deadline_unix_ms=0):
        """Stages a change (SET semantics: a retry does not apply twice), then enlists — unless
        the application enlisted this bank at Begin and says so with the deadline."""
        txn = txn_id(txn)
        if delta == 0:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, "delta: not zero")
        if deadline_unix_ms > time.time() * 1000 + MAX_DEADLINE_AHEAD_MS:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                          "deadline_unix_ms: more than a transaction may last (24 h) ahead; pass "
                          "the deadline Begin answered, or 0 to have the bank enlist itself")

        def work(db):
            if not db.execute("SELECT 1 FROM accounts WHERE id = ?", (account,)).fetchone():
                raise Refused(grpc.StatusCode.NOT_FOUND, f"account {account!r} does not exist")
            state = state_of(db, txn)
            if state not in (None, "staged"):
                raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                              f"transaction {txn} is already {state} here: begin a new one")
            db.execute("INSERT OR IGNORE INTO txns (id, state) VALUES (?, 'staged')", (txn,))
            db.execute("INSERT INTO staged (txn_id, account, delta) VALUES (?, ?, ?) "
                       "ON CONFLICT (txn_id, account) DO UPDATE SET delta = excluded.delta",
                       (txn, account, delta))
        self.store.transaction(work)
        if deadline_unix_ms == 0:
            self.enlist(txn)

    def enlist(self, txn):
        request = coordinator_pb2.EnlistRequest(
            txn_id=txn,
            participant=coordinator_pb2.ParticipantRef(name=self.name, endpoint=self.endpoint))
        call_any(self.coordinators, lambda stub: stub.Enlist(request, timeout=10))

    # --- the coordinator's side (verdict.v1.Participant) ----------------------------------------

    def prepare(self, txn, endpoints):
        txn = txn_id(txn)

        def work(db):
            state = state_of(db, txn)
            if state in ("prepared", "committed"):
                return participant_pb2.VOTE_YES, ""
            if state == "aborted":
                return participant_pb2.VOTE_NO, "the transaction was aborted here"
            if state is None:
                # Nothing staged: remember the abort, so a late Apply cannot revive it.
                db.execute("INSERT INTO txns (id, state) VALUES (?, 'aborted')", (txn,))
                return participant_pb2.VOTE_NO, "no work was staged here for this transaction"
            short = self.overdrawn(db, txn, self.shortage)
            if short:
                db.execute("UPDATE txns SET state = 'aborted' WHERE id = ?", (txn,))
                return participant_pb2.VOTE_NO, short
            db.execute("UPDATE txns SET state = 'prepared', endpoints = ?, prepared_at = ? "
                       "WHERE id = ?", (json.dumps(endpoints), time.time(), txn))
            return participant_pb2.VOTE_YES, ""
        return self.store.transaction(work)

    @staticmethod
    def overdrawn(db, txn, shortage):
        """Why the staged changes cannot commit (the shortage template, naming the account), or
        None."""
        rows = db.execute("SELECT s.account, s.delta, a.balance FROM staged s "
                          "JOIN accounts a ON a.id = s.account WHERE s.txn_id = ?", (txn,))
        for account, delta, balance in rows.fetchall():
            if balance - held(db, account) + delta < 0:
                return shortage.format(account=account)
        return None

    def commit(self, txn):
        txn = txn_id(txn)

        def work(db):
            state = state_of(db, txn)
            if state == "committed":
                return
            if state != "prepared":
                raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                              f"transaction {txn} was never prepared here "
                              f"({state or 'unknown'}): it cannot commit")
            db.execute("UPDATE accounts SET balance = balance + s.delta FROM staged s "
                       "WHERE s.txn_id = ? AND accounts.id = s.account", (txn,))
            db.execute("UPDATE txns SET state = 'committed' WHERE id = ?", (txn,))
        self.store.transaction(work)

    def abort(self, txn):
        txn = txn_id(txn)

        def work(db):
            state = state_of(db, txn)
            if state == "committed":
                raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                              f"transaction {txn} is committed here: it cannot abort")
            db.execute("INSERT INTO txns (id, state) VALUES (?, 'aborted') "
                       "ON CONFLICT (id) DO UPDATE SET state = 'aborted'", (txn,))
        self.store.transaction(work)

    # --- in doubt -------------------------------------------------------------------------------

    def in_doubt(self, quiet_period):
        """Prepared transactions without a decision for longer than quiet_period."""
        def work(db):
            rows = db.execute("SELECT id, endpoints FROM txns WHERE state = 'prepared' "
                              "AND prepared_at < ?", (time.time() - quiet_period,))
            return [(txn, json.loads(endpoints)) for txn, endpoints in rows.fetchall()]
        return self.store.transaction(work)

    def resolve(self, txn, endpoints):
        """Asks Resolve; commits or aborts on a decision, waits on PENDING."""
        request = coordinator_pb2.ResolveRequest(txn_id=txn)
        answer = call_any(endpoints + self.coordinators,
                          lambda stub: stub.Resolve(request, timeout=10))
        if answer.outcome == coordinator_pb2.OUTCOME_COMMITTED:
            self.commit(txn)
            log.info("resolved %s: committed", txn)
        elif answer.outcome == coordinator_pb2.OUTCOME_ABORTED:
            self.abort(txn)
            log.info("resolved %s: aborted", txn)


def call_any(urls, call):
    """Calls each coordinator node in turn until one answers (a follower names the leader)."""
    last = None
    for url in dict.fromkeys(urls):  # in order, once each
        target = url.removeprefix("http://")
        with grpc.insecure_channel(target) as channel:
            try:
                return call(coordinator_pb2_grpc.CoordinatorStub(channel))
            except grpc.RpcError as error:
                last = error
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
    raise last or RuntimeError("no coordinator URL known")


def resolver(participant, quiet_period, stop):
    """Every half quiet period, asks about what is in doubt."""
    while not stop.wait(quiet_period / 2):
        for txn, endpoints in participant.in_doubt(quiet_period):
            try:
                participant.resolve(txn, endpoints)
            except Exception as error:  # the coordinator may be away: ask again next round
                log.warning("cannot resolve %s yet: %s", txn, error)


def answering(method):
    """Turns Refused into its gRPC status, with its message."""
    def wrapper(self, request, context):
        try:
            return method(self, request, context)
        except Refused as refused:
            context.abort(refused.code, refused.message)
    return wrapper


class ParticipantService(participant_pb2_grpc.ParticipantServicer):
    def __init__(self, participant):
        self.p = participant

    @answering
    def Prepare(self, request, context):
        endpoints = list(request.coordinator_endpoints) or [request.coordinator_endpoint]
        vote, reason = self.p.prepare(request.txn_id, [e for e in endpoints if e])
        return participant_pb2.PrepareResponse(vote=vote, reason=reason)

    @answering
    def Commit(self, request, context):
        self.p.commit(request.txn_id)
        return participant_pb2.ParticipantCommitResponse()

    @answering
    def Abort(self, request, context):
        self.p.abort(request.txn_id)
        return participant_pb2.ParticipantAbortResponse()

    @answering
    def Decide(self, request, context):
        """Several decisions in one call, each answered as its Commit or Abort would be."""
        ids = [d.txn_id for d in request.decisions]
        if not 1 <= len(ids) <= MAX_DECISIONS or len(set(ids)) < len(ids):
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT,
                          f"Decide carries {len(ids)} decisions: send 1 to {MAX_DECISIONS}, "
                          f"each for a different transaction")
        results = []
        for decision in request.decisions:
            carry_out = self.p.commit if decision.commit else self.p.abort
            try:
                carry_out(decision.txn_id)
                results.append(participant_pb2.DecisionResult())
            except Refused as refused:
                code = refused.code.value[0]  # grpc.StatusCode values are (number, name)
                results.append(participant_pb2.DecisionResult(code=code, message=refused.message))
        return participant_pb2.DecideResponse(results=results)


class BankService(bank_pb2_grpc.BankServicer):
    def __init__(self, participant):
        self.p = participant

    @answering
    def OpenAccount(self, request, context):
        self.p.open_account(request.account, request.balance)
        return bank_pb2.OpenAccountResponse()

    @answering
    def GetBalance(self, request, context):
        balance, held_now = self.p.balance(request.account)
        return bank_pb2.GetBalanceResponse(balance=balance, held=held_now)

    @answering
    def Apply(self, request, context):
        try:
            self.p.apply(request.txn_id, request.account, request.delta,
                         request.deadline_unix_ms)
        except grpc.RpcError as error:
            raise Refused(error.code(), f"the coordinator refused Enlist: {error.details()}")
        return bank_pb2.ApplyResponse()

    @answering
    def Describe(self, request, context):
        return bank_pb2.DescribeResponse(name=self.p.name, endpoint=self.p.endpoint)


def database(args):
    """The SQLite file: --db, or participant.sqlite3 in --data-dir."""
    if not args.data_dir:
        return args.db
    Path(args.data_dir).mkdir(parents=True, exist_ok=True)
    return str(Path(args.data_dir) / "participant.sqlite3")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:7600")
    parser.add_argument("--db", default="participant.sqlite3", help="the SQLite file")
    parser.add_argument("--data-dir", help="a directory for the SQLite file instead (created if "
                                           "missing; the file is participant.sqlite3 in it), as "
                                           "Verdict's own participants take")
    parser.add_argument("--coordinator", default="http://127.0.0.1:7400",
                        help="the coordinator's URL, or every node's, comma-separated")
    parser.add_argument("--name", default="python-participant", help="the name it enlists under")
    parser.add_argument("--advertise-url", help="its URL as the coordinator reaches it")
    parser.add_argument("--shortage", default="insufficient funds in {account!r}",
                        help="the reason it votes NO with when a change would go below zero; "
                             "{account} names the account (a restaurant: '{account} is sold "
                             "out')")
    parser.add_argument("--quiet-period", type=float, default=5.0,
                        help="seconds prepared without a decision before asking Resolve")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    port = server.add_insecure_port(args.listen)
    if port == 0:
        sys.exit(f"cannot listen on {args.listen}")
    address = f"{args.listen.rsplit(':', 1)[0]}:{port}"
    participant = Participant(
        Store(database(args)), args.name, args.advertise_url or f"http://{address}",
        [url.strip() for url in args.coordinator.split(",") if url.strip()], args.shortage)
    participant_pb2_grpc.add_ParticipantServicer_to_server(ParticipantService(participant), server)
    bank_pb2_grpc.add_BankServicer_to_server(BankService(participant), server)
    server.start()
    stop = threading.Event()
    threading.Thread(target=resolver, args=(participant, args.quiet_period, stop),
                     daemon=True).start()
    print(f"listening on {address}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1):
            pass
    except KeyboardInterrupt:
        pass
    server.stop(grace=5).wait()


if __name__ == "__main__":
    main()
