"""Decisions at the door: recognise, authorise, open, and record — in that order, with the
record, the presence change and the event committed together after the gate has answered.

The gate command runs inside the transaction on purpose: a gate that fails to open must
leave no "granted" in the log, no presence change and no AccessGranted event. Holding one
transaction for the few milliseconds of a serial command is cheap at a door.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Hashable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from access.access_log import LogQuery
from access.decisions import NO_EVIDENCE, Decision, DecisionMetrics, Evidence, UnknownGate
from access.faces import FaceCache
from access.gates import Gate, GateRefused, LineDown
from access.idempotency import RequestKey, forget_before, remember, stored_decision
from access.models import AccessAttempt, AuditEntry, MembershipCopy, Presence, UsedEntryPass
from access.passes import EntryPassChecker
from access.rules import MembershipTerms, Reason, membership_verdict
from access.settings import AccessSettings
from common.events.envelope import utc_now
from common.events.outbox import UnitOfWork
from common.kernel import ServiceKernel
from contracts import AccessDenied, AccessGranted, EntryMethod

log = logging.getLogger(__name__)

# Gate results of an entry through a gate with a door contact.
UNCONFIRMED = "commanded_unconfirmed"
CONFIRMED = "door_opened"
DOOR_POLL_S = 0.05


class AccessService:
    def __init__(
        self,
        *,
        kernel: ServiceKernel,
        settings: AccessSettings,
        gates: dict[str, Gate],
        faces: FaceCache,
        passes: EntryPassChecker,
    ) -> None:
        self._kernel = kernel
        self._settings = settings
        self.gates = gates
        self.faces = faces
        self._passes = passes
        self._metrics = DecisionMetrics(kernel)
        # One decision per member at a time: two gates (or a replayed pass) racing for
        # the same member would both read "outside" otherwise.
        # The same lock table serialises the retries of one Idempotency-Key.
        self._member_locks: defaultdict[Hashable, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._lock_users: defaultdict[Hashable, int] = defaultdict(int)
        self._confirmations: set[asyncio.Task[None]] = set()

    def gate(self, gate_id: str) -> Gate:
        gate = self.gates.get(gate_id)
        if gate is None:
            raise UnknownGate(gate_id)
        return gate

    # -- entries -------------------------------------------------------------------------

    async def face_entry(
        self,
        gate_id: str,
        image: bytes,
        content_type: str,
        *,
        started: float,
        request: RequestKey | None = None,
        burst: Sequence[bytes] | None = None,
    ) -> Decision:
        gate = self.gate(gate_id)
        live = self._settings.branch(gate.config.branch_id).liveness == "active"
        async with self._first_answer(request) as earlier:
            if earlier is not None:
                return earlier
            if live and burst is None:
                # A single frame cannot show a head turn: this branch wants a burst.
                return await self._record(
                    gate,
                    "face",
                    Reason.LIVENESS_FAILED,
                    None,
                    started=started,
                    evidence=Evidence(detail="burst_required"),
                    request=request,
                )
            found = await self.faces.identify(gate.config.branch_id, image, content_type, burst=burst if live else None)
            evidence = Evidence(found.detail, found.similarity, found.model, found.cache, found.timings_ms)
            if found.reason is not Reason.GRANTED or found.member_id is None:
                return await self._record(
                    gate, "face", found.reason, None, started=started, evidence=evidence, request=request
                )
            return await self._authorise(
                gate, "face", found.member_id, started=started, evidence=evidence, request=request
            )

    async def pass_entry(
        self, gate_id: str, code: str, *, started: float, request: RequestKey | None = None
    ) -> Decision:
        gate = self.gate(gate_id)
        async with self._first_answer(request) as earlier:
            if earlier is not None:
                return earlier
            checked = await self._passes.check(code, branch_id=gate.config.branch_id, now=utc_now())
            if checked.reason is not Reason.GRANTED or checked.member_id is None or checked.token_id is None:
                return await self._record(
                    gate, "qr", checked.reason, checked.member_id, started=started, request=request
                )
            return await self._authorise(
                gate,
                "qr",
                checked.member_id,
                started=started,
                pass_id=checked.token_id,
                pass_expires_at=checked.expires_at,
                request=request,
            )

    async def remote_open(
        self, gate_id: str, *, actor: str, reason: str, started: float, request: RequestKey | None = None
    ) -> Decision:
        """An operator opens a gate from the console (a member stuck at the door)."""
        gate = self.gate(gate_id)
        async with self._first_answer(request) as earlier:
            if earlier is not None:
                return earlier
            async with self._kernel.unit_of_work() as uow:
                _audit(uow.session, actor, "remote_open", gate.config.branch_id, gate_id, reason=reason)
                gate_result = await self._command(gate)
                verdict = Reason.GRANTED if gate_result == "opened" else _gate_reason(gate_result)
                return self._log(
                    uow, gate, "remote", verdict, None, gate_result=gate_result, started=started, request=request
                )

    async def _authorise(
        self,
        gate: Gate,
        method: EntryMethod,
        member_id: uuid.UUID,
        *,
        started: float,
        pass_id: str | None = None,
        pass_expires_at: datetime | None = None,
        evidence: Evidence = NO_EVIDENCE,
        request: RequestKey | None = None,
    ) -> Decision:
        branch_id = gate.config.branch_id
        confirm_since: float | None = None
        async with self._one_at_a_time(member_id), self._kernel.unit_of_work() as uow:
            now = utc_now()
            session = uow.session
            if pass_id is not None and await session.get(UsedEntryPass, pass_id) is not None:
                return self._log(uow, gate, method, Reason.PASS_REPLAYED, member_id, started=started, request=request)
            verdict = await self._verdict(session, gate, member_id, now)
            gate_result = "not_commanded"
            if verdict is Reason.GRANTED:
                commanded_at = time.monotonic()
                gate_result = await self._command(gate)
                verdict = _gate_reason(gate_result)
                if verdict is Reason.GRANTED and gate_result == "opened" and gate.config.door_contact:
                    # Until the door contact reports the door opening (_confirm_entry).
                    gate_result, confirm_since = UNCONFIRMED, commanded_at
            if verdict is Reason.GRANTED:
                # A member is counted inside only when the gate was actually commanded: a
                # fail-safe release with the line down proves nothing about who went in.
                if gate_result != "released_fail_safe" or gate.config.direction == "out":
                    await self._set_presence(session, member_id, branch_id, gate, now)
                if pass_id is not None and pass_expires_at is not None:
                    session.add(UsedEntryPass(token_id=pass_id, expires_at=pass_expires_at))
            decision = self._log(
                uow,
                gate,
                method,
                verdict,
                member_id,
                gate_result=gate_result,
                started=started,
                evidence=evidence,
                request=request,
            )
        if confirm_since is not None:
            task = asyncio.create_task(self._confirm_entry(gate, decision, since=confirm_since, decided_at=now))
            self._confirmations.add(task)
            task.add_done_callback(self._confirmations.discard)
        return decision

    async def _confirm_entry(self, gate: Gate, decision: Decision, *, since: float, decided_at: datetime) -> None:
        """Wait for the door contact: an entry the door never opened for stays logged as
        commanded_unconfirmed, and its member is not left counted inside."""
        config = gate.config
        deadline = since + (config.open_ms + config.door_confirm_grace_ms) / 1000
        confirmed = gate.driver.line.door_opened_since(config.channel, since)
        while not confirmed and time.monotonic() < deadline:
            await asyncio.sleep(DOOR_POLL_S)
            confirmed = gate.driver.line.door_opened_since(config.channel, since)
        try:
            async with self._kernel.db.sessions() as session, session.begin():
                if confirmed:
                    await session.execute(
                        update(AccessAttempt)
                        .where(AccessAttempt.attempt_id == decision.attempt_id)
                        .values(gate_result=CONFIRMED)
                    )
                elif decision.member_id is not None and config.direction == "in":
                    await session.execute(
                        update(Presence)
                        .where(
                            Presence.member_id == decision.member_id,
                            Presence.branch_id == config.branch_id,
                            Presence.gate_id == config.gate_id,
                            Presence.inside.is_(True),
                            Presence.changed_at <= decided_at,
                        )
                        .values(inside=False)
                    )
        except Exception:
            log.exception("could not record the door contact for attempt %s", decision.attempt_id)
        if not confirmed:
            log.warning("gate %s: entry %s not confirmed by the door contact", config.gate_id, decision.attempt_id)

    async def stop(self) -> None:
        for task in list(self._confirmations):
            task.cancel()
        await asyncio.gather(*self._confirmations, return_exceptions=True)

    async def _record(
        self,
        gate: Gate,
        method: EntryMethod,
        reason: Reason,
        member_id: uuid.UUID | None,
        *,
        started: float,
        evidence: Evidence = NO_EVIDENCE,
        request: RequestKey | None = None,
    ) -> Decision:
        """An attempt refused before authorisation (nobody recognised, a bad pass)."""
        async with self._kernel.unit_of_work() as uow:
            return self._log(uow, gate, method, reason, member_id, started=started, evidence=evidence, request=request)

    async def _verdict(self, session: AsyncSession, gate: Gate, member_id: uuid.UUID, now: datetime) -> Reason:
        config = gate.config
        if config.direction == "out":
            return Reason.GRANTED  # nobody is kept inside, whatever the line's state
        if not gate.line_up and config.line_down == "fail_secure":
            return Reason.GATE_OFFLINE
        branch = self._settings.branch(config.branch_id)
        rows = (await session.scalars(select(MembershipCopy).where(MembershipCopy.member_id == member_id))).all()
        verdict = membership_verdict(
            (_terms(row) for row in rows), branch_id=config.branch_id, now=now, timezone=branch.timezone
        )
        if verdict is not Reason.GRANTED:
            return verdict
        fresh_since = now - timedelta(hours=self._settings.access_presence_expiry_h)
        if config.anti_passback:
            presence = await session.get(Presence, (member_id, config.branch_id))
            if presence is not None and presence.inside and presence.changed_at > fresh_since:
                return Reason.ALREADY_INSIDE
        if branch.occupancy_limit is not None:
            others = await _inside(session, config.branch_id, fresh_since, besides=member_id)
            if others >= branch.occupancy_limit:
                return Reason.BRANCH_FULL
        return Reason.GRANTED

    async def _command(self, gate: Gate) -> str:
        if not gate.line_up:
            # fail_safe: the lock released itself when control was lost; nothing to send.
            return "released_fail_safe" if gate.config.line_down == "fail_safe" else "line_down"
        try:
            await gate.driver.open(gate.config.open_ms)
        except LineDown:
            return "released_fail_safe" if gate.config.line_down == "fail_safe" else "line_down"
        except GateRefused as exc:
            log.warning("gate %s refused to open: %s", gate.config.gate_id, exc.code)
            return f"refused_{exc.code}"[:32]
        return "opened"

    async def _set_presence(
        self, session: AsyncSession, member_id: uuid.UUID, branch_id: str, gate: Gate, now: datetime
    ) -> None:
        inside = gate.config.direction == "in"
        presence = await session.get(Presence, (member_id, branch_id))
        if presence is None:
            session.add(
                Presence(
                    member_id=member_id, branch_id=branch_id, inside=inside, changed_at=now, gate_id=gate.config.gate_id
                )
            )
        else:
            presence.inside, presence.changed_at, presence.gate_id = inside, now, gate.config.gate_id

    def _log(
        self,
        uow: UnitOfWork,
        gate: Gate,
        method: EntryMethod,
        reason: Reason,
        member_id: uuid.UUID | None,
        *,
        started: float,
        gate_result: str = "not_commanded",
        evidence: Evidence = NO_EVIDENCE,
        request: RequestKey | None = None,
    ) -> Decision:
        config = gate.config
        granted = reason is Reason.GRANTED
        now = utc_now()
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        offline = self._offline()
        attempt_id = uuid.uuid4()
        uow.session.add(
            AccessAttempt(
                attempt_id=attempt_id,
                decided_at=now,
                branch_id=config.branch_id,
                gate_id=config.gate_id,
                direction=config.direction,
                method=method,
                member_id=member_id,
                outcome="granted" if granted else "denied",
                reason=reason.value,
                similarity=evidence.similarity,
                model=evidence.model,
                latency_ms=latency_ms,
                gate_result=gate_result,
                offline=offline,
            )
        )
        common = {
            "attempt_id": attempt_id,
            "branch_id": config.branch_id,
            "gate_id": config.gate_id,
            "member_id": member_id,
            "method": method,
            "decided_at": now,
            "offline": offline,
        }
        if granted:
            uow.emit(AccessGranted(direction=config.direction, **common))
        else:
            uow.emit(AccessDenied(reason=reason.value, **common))
        outcome = "granted" if granted else "denied"
        self._metrics.attempts.labels(method, outcome, reason.value).inc()
        self._metrics.latency.labels(method, outcome).observe(latency_ms / 1000)
        decision = Decision(
            attempt_id=attempt_id,
            gate_id=config.gate_id,
            branch_id=config.branch_id,
            direction=config.direction,
            method=method,
            granted=granted,
            reason=reason,
            member_id=member_id,
            gate_result=gate_result,
            offline=offline,
            latency_ms=latency_ms,
            evidence=evidence,
        )
        if request is not None:
            remember(uow.session, request=request, attempt_id=attempt_id, decision=decision.stored(), now=now)
        return decision

    def _offline(self) -> bool:
        bus = self._kernel.bus
        return bus is not None and not bus.health().get("ok", False)

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, subject: Hashable) -> AsyncIterator[None]:
        lock = self._member_locks[subject]
        self._lock_users[subject] += 1
        try:
            async with lock:
                yield
        finally:
            # Forget the lock once nobody holds or waits for it (counted, since a woken
            # waiter does not hold the lock yet): one per member ever seen would pile up.
            self._lock_users[subject] -= 1
            if not self._lock_users[subject]:
                del self._lock_users[subject], self._member_locks[subject]

    @contextlib.asynccontextmanager
    async def _first_answer(self, request: RequestKey | None) -> AsyncIterator[Decision | None]:
        """Yields the decision already given under ``request``'s key (a retry), or None:
        then the caller decides, and its decision is stored under the key with it."""
        if request is None:
            yield None
            return
        async with self._one_at_a_time(("request", *request.scope)):
            since = utc_now() - timedelta(seconds=self._settings.access_idempotency_ttl_s)
            async with self._kernel.db.sessions() as session, session.begin():
                stored = await stored_decision(session, request=request, since=since)
            yield Decision.replay(stored) if stored is not None else None

    # -- operators -----------------------------------------------------------------------

    async def reset_passback(self, *, branch_id: str, member_id: uuid.UUID, actor: str, reason: str) -> bool:
        """Mark a member as outside (they left without badging out); audited. Returns
        whether they were inside."""
        async with self._one_at_a_time(member_id), self._kernel.unit_of_work() as uow:
            presence = await uow.session.get(Presence, (member_id, branch_id), with_for_update=True)
            was_inside = presence is not None and presence.inside
            if presence is not None:
                presence.inside, presence.changed_at = False, utc_now()
            _audit(
                uow.session,
                actor,
                "passback_reset",
                branch_id,
                str(member_id),
                reason=reason,
                was_inside=was_inside,
            )
        return was_inside

    async def occupancy(self, branch_id: str) -> int:
        fresh_since = utc_now() - timedelta(hours=self._settings.access_presence_expiry_h)
        async with self._kernel.db.sessions() as session:
            return await _inside(session, branch_id, fresh_since)

    async def attempts(self, query: LogQuery) -> list[AccessAttempt]:
        async with self._kernel.db.sessions() as session:
            return list((await session.scalars(query.statement())).all())

    async def forget_used_passes(self) -> None:
        """Used passes only matter until they expire; idempotency keys until their TTL."""
        now = utc_now()
        async with self._kernel.db.sessions() as session, session.begin():
            await session.execute(delete(UsedEntryPass).where(UsedEntryPass.expires_at < now - timedelta(hours=1)))
            await forget_before(session, before=now - timedelta(seconds=self._settings.access_idempotency_ttl_s))


async def _inside(
    session: AsyncSession, branch_id: str, fresh_since: datetime, *, besides: uuid.UUID | None = None
) -> int:
    """Members inside the branch (presence older than the expiry does not count)."""
    statement = select(func.count()).where(
        Presence.branch_id == branch_id, Presence.inside.is_(True), Presence.changed_at > fresh_since
    )
    if besides is not None:
        statement = statement.where(Presence.member_id != besides)
    return int(await session.scalar(statement) or 0)


def _gate_reason(gate_result: str) -> Reason:
    if gate_result in ("opened", "released_fail_safe"):
        return Reason.GRANTED
    if gate_result == "line_down":
        return Reason.GATE_OFFLINE
    return Reason.GATE_FAILED


def _terms(row: MembershipCopy) -> MembershipTerms:
    return MembershipTerms(
        branch_id=row.branch_id,
        status=row.status,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        identity_required=row.identity_required,
        identity_verified=row.identity_verified,
        access_hours=row.access_hours,
    )


def _audit(
    session: AsyncSession, actor: str, action: str, branch_id: str, subject: str | None, **detail: object
) -> None:
    session.add(
        AuditEntry(at=utc_now(), actor=actor, action=action, branch_id=branch_id, subject=subject, detail=detail)
    )
