"""auth's HTTP routes (thin: parse, call the service, shape the answer)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse

from auth.devices import DeviceRejected, DeviceService, NotYourBranch, UnknownDevice
from auth.entry_passes import EntryPasses
from auth.errors import (
    EmailTaken,
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidResetToken,
    LoginLocked,
    UnknownUser,
    WeakPassword,
)
from auth.faces import ConsentRequired, FaceEnrolments, FaceNotUsable, FaceServiceUnavailable
from auth.identity import IdentityCheckRefused, IdentityCheckUnavailable
from auth.keys import KeyRing
from auth.memberships import InvalidMembership, MembershipService
from auth.schemas import (
    AccountDeletionIn,
    AuditEntryPublic,
    ConsentIn,
    ConsentOut,
    DeviceCredentialsOut,
    DeviceIn,
    DevicePublic,
    DeviceTokenIn,
    DeviceTokenOut,
    EntryPassIn,
    EntryPassOut,
    FaceEnrolledOut,
    FaceStatusOut,
    IdentityCheckIn,
    IdentityCheckOut,
    KeyRotated,
    LoginIn,
    MembershipIn,
    MembershipPublic,
    PasswordChangeIn,
    RefreshIn,
    RepublishIn,
    RepublishOut,
    ResetIn,
    ResetRequestIn,
    RevocationOut,
    RolesIn,
    SignupIn,
    TokenOut,
    UserPublic,
)
from auth.service import AccountService, IssuedTokens
from common.api import CurrentPrincipal, from_app_state, require_roles
from common.security import Principal, Role

Accounts = Annotated[AccountService, Depends(from_app_state("accounts", AccountService))]
Keys = Annotated[KeyRing, Depends(from_app_state("keys", KeyRing))]
Faces = Annotated[FaceEnrolments, Depends(from_app_state("faces", FaceEnrolments))]
Devices = Annotated[DeviceService, Depends(from_app_state("devices", DeviceService))]
Memberships = Annotated[MembershipService, Depends(from_app_state("memberships", MembershipService))]
Passes = Annotated[EntryPasses, Depends(from_app_state("entry_passes", EntryPasses))]
Operator = Annotated[Principal, Depends(require_roles(Role.OPERATOR))]

router = APIRouter()


async def weak_password(_request: Request, exc: Exception) -> JSONResponse:
    """Every route that sets a password refuses a weak one the same way (registered on the
    app in auth.app)."""
    assert isinstance(exc, WeakPassword)
    # The same shape as any other field error, so a client reads one kind of 422.
    problems = [
        {"loc": ["body", "password"], "msg": f"password {problem}", "type": "weak_password"} for problem in exc.problems
    ]
    return JSONResponse(
        {"detail": problems},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def source_address(request: Request) -> str | None:
    """The caller's address: the gateway appends it to X-Forwarded-For, so the last hop
    is the one our own gateway saw (auth is only reachable through it)."""
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded:
        return forwarded.rsplit(",", 1)[-1].strip()[:64] or None
    return request.client.host if request.client else None


def _tokens(issued: IssuedTokens) -> TokenOut:
    return TokenOut(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
        refresh_expires_in=issued.refresh_expires_in,
    )


def _user(user: Any) -> UserPublic:
    return UserPublic(
        id=user.id,
        email=user.email,
        phone=user.phone,
        roles=user.roles,
        branches=user.branches or [],
        identity_verified_at=user.identity_verified_at,
    )


@router.post("/signup", status_code=status.HTTP_201_CREATED)
async def signup(body: SignupIn, accounts: Accounts, request: Request) -> UserPublic:
    try:
        user = await accounts.register(
            email=body.email, phone=body.phone, password=body.password, source=source_address(request)
        )
    except EmailTaken as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, "an account with this email or phone number exists") from exc
    return _user(user)


@router.post("/login")
async def login(body: LoginIn, accounts: Accounts, request: Request) -> TokenOut:
    try:
        issued = await accounts.login(
            email=body.email, phone=body.phone, password=body.password, source=source_address(request)
        )
    except InvalidCredentials as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "email or password is wrong") from exc
    except LoginLocked as exc:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed attempts; try again later",
            headers={"Retry-After": str(exc.retry_after_s)},
        ) from exc
    return _tokens(issued)


@router.post("/token/refresh")
async def refresh(body: RefreshIn, accounts: Accounts, request: Request) -> TokenOut:
    try:
        return _tokens(await accounts.refresh(refresh_token=body.refresh_token, source=source_address(request)))
    except InvalidRefreshToken as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "refresh token invalid, expired or revoked") from exc


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshIn, accounts: Accounts, request: Request) -> Response:
    await accounts.logout(refresh_token=body.refresh_token, source=source_address(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me")
async def me(principal: CurrentPrincipal, accounts: Accounts) -> UserPublic:
    user = await accounts.get(_user_id(principal))
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "account no longer exists")
    return _user(user)


@router.post("/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(
    body: PasswordChangeIn, principal: CurrentPrincipal, accounts: Accounts, request: Request
) -> Response:
    try:
        await accounts.change_password(
            user_id=_user_id(principal),
            current=body.current_password,
            new=body.new_password,
            source=source_address(request),
        )
    except InvalidCredentials as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "current password is wrong") from exc
    except UnknownUser as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "account no longer exists") from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/users/{user_id}/roles")
async def assign_roles(
    user_id: uuid.UUID, body: RolesIn, operator: Operator, accounts: Accounts, request: Request
) -> UserPublic:
    try:
        user = await accounts.assign_roles(
            actor=operator.subject,
            user_id=user_id,
            roles=body.roles,
            branches=body.branches,
            source=source_address(request),
        )
    except UnknownUser as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such account") from exc
    return _user(user)


@router.post("/admin/keys/rotate")
async def rotate_key(operator: Operator, accounts: Accounts, request: Request) -> KeyRotated:
    return KeyRotated(kid=await accounts.rotate_signing_key(actor=operator.subject, source=source_address(request)))


@router.post("/admin/republish")
async def republish(
    body: RepublishIn, operator: Operator, memberships: Memberships, faces: Faces, request: Request
) -> RepublishOut:
    """Announce every membership (or face vector) again, for a new access site to fill
    its local copy; consumers that already have them ignore the repeats."""
    source = source_address(request)
    if body.what == "memberships":
        count = await memberships.republish(actor=operator.subject, source=source)
    else:
        count = await faces.republish(actor=operator.subject, source=source)
    return RepublishOut(published=count)


@router.get("/admin/audit")
async def audit_trail(
    _operator: Operator,
    accounts: Accounts,
    subject: Annotated[str | None, Query(max_length=254)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[AuditEntryPublic]:
    entries = await accounts.audit_trail(subject=subject, action=action, limit=limit)
    return [AuditEntryPublic.model_validate(entry, from_attributes=True) for entry in entries]


@router.post("/password/reset-request", status_code=status.HTTP_202_ACCEPTED)
async def request_reset(body: ResetRequestIn, accounts: Accounts, request: Request) -> dict[str, str]:
    await accounts.request_password_reset(email=body.email, phone=body.phone, source=source_address(request))
    return {"detail": "if the account exists, a reset link is on its way"}


@router.post("/password/reset", status_code=status.HTTP_204_NO_CONTENT)
async def reset_password(body: ResetIn, accounts: Accounts, request: Request) -> Response:
    try:
        await accounts.reset_password(
            reset_token=body.reset_token, new_password=body.new_password, source=source_address(request)
        )
    except InvalidResetToken as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "reset token invalid, used or expired") from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _device_scope(principal: Principal, branch_id: str | None = None) -> frozenset[str] | None:
    """Operators manage every branch's devices (None: no limit); a branch owner those of the
    branches in their token. Anyone else, or an owner naming another branch, gets a 403
    that says why."""
    if principal.has_any_role({Role.OPERATOR}):
        return None
    if not principal.has_any_role({Role.BRANCH_OWNER}) or principal.user_id is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only operators and branch owners manage devices")
    if branch_id is not None and branch_id not in principal.branches:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "you do not manage this branch")
    return principal.branches


NOT_YOURS = "this device belongs to a branch you do not manage"


@router.get("/devices")
async def list_devices(
    principal: CurrentPrincipal,
    devices: Devices,
    branch_id: Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")],
    include_revoked: bool = False,
) -> list[DevicePublic]:
    """A branch's device accounts (never their secrets): its owner or an operator."""
    _device_scope(principal, branch_id)
    rows = await devices.of_branch(branch_id=branch_id, include_revoked=include_revoked)
    return [DevicePublic.model_validate(row, from_attributes=True) for row in rows]


@router.post("/devices", status_code=status.HTTP_201_CREATED)
async def register_device(
    body: DeviceIn, principal: CurrentPrincipal, devices: Devices, request: Request
) -> DeviceCredentialsOut:
    _device_scope(principal, body.branch_id)
    credentials = await devices.register(
        actor=principal.subject,
        name=body.name,
        kind=body.kind,
        branch_id=body.branch_id,
        source=source_address(request),
    )
    return DeviceCredentialsOut(client_id=credentials.device_id, client_secret=credentials.client_secret)


@router.post("/devices/{device_id}/rotate")
async def rotate_device(
    device_id: uuid.UUID, principal: CurrentPrincipal, devices: Devices, request: Request
) -> DeviceCredentialsOut:
    scope = _device_scope(principal)
    try:
        credentials = await devices.rotate(
            actor=principal.subject, device_id=device_id, source=source_address(request), allowed_branches=scope
        )
    except UnknownDevice as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such active device") from exc
    except NotYourBranch as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, NOT_YOURS) from exc
    return DeviceCredentialsOut(client_id=credentials.device_id, client_secret=credentials.client_secret)


@router.delete("/devices/{device_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_device(
    device_id: uuid.UUID, principal: CurrentPrincipal, devices: Devices, request: Request
) -> Response:
    scope = _device_scope(principal)
    try:
        await devices.revoke(
            actor=principal.subject, device_id=device_id, source=source_address(request), allowed_branches=scope
        )
    except UnknownDevice as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such device") from exc
    except NotYourBranch as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, NOT_YOURS) from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/devices/token")
async def device_token(body: DeviceTokenIn, devices: Devices) -> DeviceTokenOut:
    try:
        token, expires_in = await devices.issue_token(device_id=body.client_id, client_secret=body.client_secret)
    except DeviceRejected as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "device credentials rejected") from exc
    return DeviceTokenOut(access_token=token, expires_in=expires_in)


@router.put("/members/{member_id}/memberships")
async def set_membership(
    member_id: uuid.UUID,
    body: MembershipIn,
    principal: CurrentPrincipal,
    memberships: Memberships,
    request: Request,
) -> MembershipPublic:
    # Operators manage every membership; a branch owner only those of their branches.
    if not principal.has_any_role({Role.OPERATOR}) and (
        body.branch_id is None
        or not principal.has_any_role({Role.BRANCH_OWNER})
        or not principal.may_act_for_branch(body.branch_id)
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "not permitted for this branch")
    try:
        membership = await memberships.set_membership(
            actor=principal.subject,
            member_id=member_id,
            branch_id=body.branch_id,
            status=body.status,
            valid_from=body.valid_from,
            valid_until=body.valid_until,
            requires_identity=body.requires_identity,
            access_hours=body.access_hours,
            source=source_address(request),
        )
    except InvalidMembership as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    except UnknownUser as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such member") from exc
    return MembershipPublic.model_validate(membership, from_attributes=True)


@router.post("/me/identity-check")
async def identity_check(
    body: IdentityCheckIn, principal: CurrentPrincipal, memberships: Memberships, request: Request
) -> IdentityCheckOut:
    try:
        verdict = await memberships.verify_identity(
            member_id=_user_id(principal),
            card_token=body.card_token,
            holder_name=body.holder_name,
            birth_date=body.birth_date,
            source=source_address(request),
        )
    except IdentityCheckRefused as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"card check refused: {exc.code}") from exc
    except IdentityCheckUnavailable as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "identity check unavailable, try again shortly",
            headers={"Retry-After": "30"},
        ) from exc
    except UnknownUser as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "account no longer exists") from exc
    return IdentityCheckOut(verified=verdict.verified, reason=verdict.reason)


@router.post("/me/entry-pass")
async def entry_pass(body: EntryPassIn, principal: CurrentPrincipal, passes: Passes) -> EntryPassOut:
    if principal.has_any_role({Role.DEVICE}):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "entry passes are for members")
    issued = passes.issue(_user_id(principal), body.branch_id)
    return EntryPassOut(code=issued.code, expires_in=issued.expires_in)


@router.get("/me/memberships")
async def my_memberships(principal: CurrentPrincipal, memberships: Memberships) -> list[MembershipPublic]:
    return [
        MembershipPublic.model_validate(item, from_attributes=True)
        for item in await memberships.of_member(_user_id(principal))
    ]


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT)
async def delete_account(
    body: AccountDeletionIn, principal: CurrentPrincipal, accounts: Accounts, request: Request
) -> Response:
    try:
        await accounts.delete_account(
            user_id=_user_id(principal), password=body.password, source=source_address(request)
        )
    except InvalidCredentials as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "password is wrong") from exc
    except UnknownUser as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "account no longer exists") from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/me/face/consent", status_code=status.HTTP_201_CREATED)
async def give_face_consent(body: ConsentIn, principal: CurrentPrincipal, faces: Faces, request: Request) -> ConsentOut:
    try:
        consent = await faces.give_consent(
            member_id=_user_id(principal), text_version=body.text_version, source=source_address(request)
        )
    except ConsentRequired as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return ConsentOut(id=consent.id, text_version=consent.text_version, given_at=consent.given_at)


@router.delete("/me/face/consent", status_code=status.HTTP_204_NO_CONTENT)
async def withdraw_face_consent(principal: CurrentPrincipal, faces: Faces, request: Request) -> Response:
    await faces.withdraw_consent(member_id=_user_id(principal), source=source_address(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me/face")
async def face_status(principal: CurrentPrincipal, faces: Faces) -> FaceStatusOut:
    """The member's own: which consent text is in force, whether they accepted it, whether
    a face is enrolled."""
    found = await faces.status(member_id=_user_id(principal))
    return FaceStatusOut(
        consent_version=found.consent_version, consent_given_at=found.consent_given_at, enrolled_at=found.enrolled_at
    )


@router.post("/me/face", status_code=status.HTTP_201_CREATED)
async def enrol_face(principal: CurrentPrincipal, faces: Faces, request: Request) -> FaceEnrolledOut:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("image/jpeg", "image/png"):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, "send the photo as image/jpeg or image/png")
    image = await request.body()
    if len(image) > request.app.state.max_face_upload_bytes:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, "photo too large")
    if not image:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "empty photo")
    try:
        vector = await faces.enrol(
            member_id=_user_id(principal),
            image=image,
            content_type=content_type,
            source=source_address(request),
        )
    except ConsentRequired as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    except FaceNotUsable as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.reason) from exc
    except FaceServiceUnavailable as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "face service unavailable, try again shortly",
            headers={"Retry-After": "10"},
        ) from exc
    return FaceEnrolledOut(model=vector.model, embedding_space=vector.embedding_space)


@router.delete("/me/face", status_code=status.HTTP_204_NO_CONTENT)
async def erase_face(principal: CurrentPrincipal, faces: Faces, request: Request) -> Response:
    await faces.erase(member_id=_user_id(principal), source=source_address(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/revocations")
async def revocations_in_force(accounts: Accounts) -> list[RevocationOut]:
    """Public, like the JWKS: a replica starting up reads what is in force before it follows
    the bus. It names only opaque account and session ids, never a person or a token."""
    return [
        RevocationOut(
            subject=item.subject,
            session_id=item.session_id,
            issued_before=item.issued_before,
            expires_at=item.expires_at,
        )
        for item in await accounts.revocations_in_force()
    ]


@router.get("/.well-known/jwks.json")
async def jwks(keys: Keys) -> dict[str, Any]:
    return keys.jwks()


def _user_id(principal: Principal) -> uuid.UUID:
    if principal.user_id is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "not a member account")
    return principal.user_id
