"""Who may get a 2xx from each route: the one table the route matrix checks.

Every route a service publishes in its OpenAPI must be named here; a new route without an
entry fails the matrix, so nobody adds an endpoint without saying who may call it.

Path parameters are filled so that the resource belongs to branch A (``gangnam``), and the
principals are: anonymous, a customer, a helper, the owner of branch A, the owner of branch
B, an operator, a device (kiosk) of branch A and a device of branch B. A principal outside
a route's set must never get a 2xx; inside it, any answer but a 5xx is acceptable (the
resource named by the filled-in path often does not exist, or the empty body is refused).
"""

from __future__ import annotations

from enum import StrEnum


class Caller(StrEnum):
    ANONYMOUS = "anonymous"
    CUSTOMER = "customer"
    HELPER = "helper"
    OWNER_A = "owner_of_branch_a"
    OWNER_B = "owner_of_branch_b"
    OPERATOR = "operator"
    DEVICE_A = "device_of_branch_a"
    DEVICE_B = "device_of_branch_b"


PERSONS = frozenset({Caller.CUSTOMER, Caller.HELPER, Caller.OWNER_A, Caller.OWNER_B, Caller.OPERATOR})
ANYONE = frozenset(Caller)
SIGNED_IN = ANYONE - {Caller.ANONYMOUS}
OPERATORS = frozenset({Caller.OPERATOR})
STAFF_OF_A = frozenset({Caller.OWNER_A, Caller.OPERATOR})
STAFF = frozenset({Caller.OWNER_A, Caller.OWNER_B, Caller.OPERATOR})
KIOSK_OF_A = frozenset({Caller.DEVICE_A})
HELPERS = frozenset({Caller.HELPER})
NOBODY: frozenset[Caller] = frozenset()


class Scoped(frozenset[Caller]):
    """A listing filtered by the caller's scope: callers outside the set may get a 2xx
    only with an empty list (they see nothing, which is not a leak)."""


# Operational endpoints every service answers without a token (probes and scraping;
# the gateway does not route them, and the NetworkPolicy keeps them in the cluster).
PROBES = {("GET", "/healthz"): ANYONE, ("GET", "/readyz"): ANYONE, ("GET", "/metrics"): ANYONE}

POLICY: dict[str, dict[tuple[str, str], frozenset[Caller]]] = {
    "auth": {
        **PROBES,
        ("POST", "/signup"): ANYONE,
        ("POST", "/login"): ANYONE,
        ("POST", "/token/refresh"): ANYONE,
        ("POST", "/logout"): ANYONE,
        ("GET", "/me"): PERSONS,
        ("DELETE", "/me"): PERSONS,
        ("POST", "/password"): PERSONS,
        ("PUT", "/users/{user_id}/roles"): OPERATORS,
        ("POST", "/admin/keys/rotate"): OPERATORS,
        ("POST", "/admin/republish"): OPERATORS,
        ("GET", "/admin/audit"): OPERATORS,
        ("POST", "/password/reset-request"): ANYONE,
        ("POST", "/password/reset"): ANYONE,
        # Operators, and the owner of the device's branch (by their token's branch claims).
        ("GET", "/devices"): STAFF_OF_A,
        ("POST", "/devices"): STAFF_OF_A,
        ("POST", "/devices/{device_id}/rotate"): STAFF_OF_A,
        ("DELETE", "/devices/{device_id}"): STAFF_OF_A,
        ("POST", "/devices/token"): ANYONE,
        ("PUT", "/members/{member_id}/memberships"): STAFF_OF_A,
        ("POST", "/me/identity-check"): PERSONS,
        ("POST", "/me/entry-pass"): PERSONS,
        ("GET", "/me/memberships"): PERSONS,
        ("POST", "/me/face/consent"): PERSONS,
        ("DELETE", "/me/face/consent"): PERSONS,
        ("GET", "/me/face"): PERSONS,
        ("POST", "/me/face"): PERSONS,
        ("DELETE", "/me/face"): PERSONS,
        ("GET", "/.well-known/jwks.json"): ANYONE,
        # Opaque account and session ids only, read by replicas as they start.
        ("GET", "/revocations"): ANYONE,
    },
    "access": {
        **PROBES,
        ("POST", "/v1/gates/{gate_id}/face"): KIOSK_OF_A,
        ("POST", "/v1/gates/{gate_id}/face-burst"): KIOSK_OF_A,
        ("POST", "/v1/gates/{gate_id}/pass"): KIOSK_OF_A,
        ("POST", "/v1/gates/{gate_id}/open"): STAFF_OF_A,
        # Each caller sees the gates of the branches it acts for.
        ("GET", "/v1/gates"): Scoped(STAFF | KIOSK_OF_A | {Caller.DEVICE_B}),
        # A helper working at the branch may see how busy it is.
        ("GET", "/v1/branches/{branch_id}/occupancy"): STAFF_OF_A | KIOSK_OF_A | {Caller.HELPER},
        ("POST", "/v1/branches/{branch_id}/members/{member_id}/passback-reset"): STAFF_OF_A,
        ("GET", "/v1/access-log"): STAFF,
    },
    "monitoring": {
        **PROBES,
        ("PUT", "/v1/equipment"): STAFF,
        ("POST", "/v1/equipment"): STAFF,
        ("GET", "/v1/equipment/{device_id}"): STAFF_OF_A,
        ("PUT", "/v1/equipment/{device_id}"): STAFF_OF_A,
        ("DELETE", "/v1/equipment/{device_id}"): STAFF_OF_A,
        ("POST", "/v1/equipment/{device_id}/token"): STAFF_OF_A,
        ("GET", "/v1/equipment/{device_id}/history"): STAFF_OF_A,
        ("POST", "/v1/equipment/{device_id}/maintenance"): STAFF_OF_A,
        ("GET", "/v1/equipment/{device_id}/maintenance"): STAFF_OF_A,
        ("GET", "/v1/branches/{branch_id}/equipment"): STAFF_OF_A,
        ("GET", "/v1/faults"): STAFF,
        ("POST", "/v1/faults/{fault_id}/ack"): STAFF_OF_A,
        ("GET", "/v1/stream"): STAFF,
        # The event bus's backlog and parking lot: every service's events, operators only.
        ("GET", "/v1/bus/backlog"): OPERATORS,
        ("GET", "/v1/bus/parked"): OPERATORS,
        ("GET", "/v1/bus/parked/{service}/{parked_id}"): OPERATORS,
        ("POST", "/v1/bus/parked/{service}/{parked_id}/replay"): OPERATORS,
        ("POST", "/v1/bus/parked/{service}/replay"): OPERATORS,
    },
    "notification": {
        **PROBES,
        ("GET", "/inbox"): PERSONS,
        ("POST", "/inbox/read"): PERSONS,
        ("PUT", "/me/push-tokens"): PERSONS,
        ("DELETE", "/me/push-tokens/{token}"): PERSONS,
        ("GET", "/me/preferences"): PERSONS,
        ("PUT", "/me/preferences"): PERSONS,
    },
    "running": {
        **PROBES,
        ("GET", "/v1/friends"): PERSONS,
        ("POST", "/v1/friends/{other}"): PERSONS,
        ("DELETE", "/v1/friends/{other}"): PERSONS,
        ("POST", "/v1/friends/{other}/accept"): PERSONS,
        ("GET", "/v1/friends/code"): PERSONS,
        ("POST", "/v1/friends/code"): PERSONS,
        ("POST", "/v1/friends/requests"): PERSONS,
        ("GET", "/v1/runs"): PERSONS,
        ("GET", "/v1/runs/{run_id}"): PERSONS,
        ("GET", "/v1/records"): PERSONS,
        ("POST", "/v1/runs/{run_id}/share"): PERSONS,
        ("GET", "/v1/runs/{run_id}/gpx"): PERSONS,
        ("POST", "/v1/runs/gpx"): PERSONS,
        ("POST", "/v1/races"): PERSONS,
        ("GET", "/v1/races/{race_id}"): PERSONS,
        ("POST", "/v1/races/{race_id}/join"): PERSONS,
        ("POST", "/v1/races/{race_id}/start"): PERSONS,
        ("POST", "/v1/outings"): PERSONS,
        ("DELETE", "/v1/outings/{outing_id}"): PERSONS,
        ("PUT", "/v1/steps/{day}"): PERSONS,
        ("GET", "/v1/steps/ranking"): PERSONS,
        ("POST", "/v1/runs/import"): PERSONS,
        ("POST", "/v1/runs/archive"): PERSONS,
        # A share link is its own credential (the run, its privacy zones left out).
        ("GET", "/v1/shared/{token}"): ANYONE,
        ("GET", "/v1/profile"): PERSONS,
        ("PUT", "/v1/profile"): PERSONS,
        ("GET", "/v1/outings"): PERSONS,
        ("POST", "/v1/outings/{outing_id}/{answer}"): PERSONS,
        ("POST", "/v1/steps/goals"): PERSONS,
        ("GET", "/v1/steps/goals"): PERSONS,
        ("GET", "/v1/steps/stats"): PERSONS,
        ("POST", "/v1/workouts"): PERSONS,
        ("GET", "/v1/workouts"): PERSONS,
        ("GET", "/v1/analytics"): PERSONS,
        ("POST", "/v1/shoes"): PERSONS,
        ("GET", "/v1/shoes"): PERSONS,
        ("PUT", "/v1/runs/{run_id}/shoe"): PERSONS,
        ("POST", "/v1/strava/connect"): PERSONS,
        ("POST", "/v1/runs/{run_id}/strava"): PERSONS,
        ("GET", "/v1/runs/{run_id}/strava"): PERSONS,
        ("POST", "/v1/coach"): PERSONS,
    },
    "helper": {
        **PROBES,
        ("PUT", "/v1/branches/{branch_id}/task-types/{code}"): STAFF_OF_A,
        # Helpers bound to the branch too (by binding, not by token: none is bound here).
        ("GET", "/v1/branches/{branch_id}/task-types"): STAFF_OF_A | {Caller.HELPER},
        ("PUT", "/v1/branches/{branch_id}/helpers/{helper_id}"): STAFF_OF_A,
        ("DELETE", "/v1/branches/{branch_id}/helpers/{helper_id}"): STAFF_OF_A,
        # The helper who sent the task, and the staff of its branch.
        ("GET", "/v1/tasks/{task_id}/photos/{position}"): STAFF_OF_A | {Caller.HELPER},
        ("POST", "/v1/tasks"): HELPERS,
        ("GET", "/v1/me/tasks"): HELPERS,
        ("GET", "/v1/me/tasks/{task_id}"): HELPERS,
        ("GET", "/v1/me/balance"): HELPERS,
        ("GET", "/v1/me/ledger"): HELPERS,
        ("POST", "/v1/me/payouts"): HELPERS,
        ("GET", "/v1/me/payouts"): HELPERS,
        ("POST", "/v1/payouts/{payout_id}/status"): OPERATORS,
        # Payouts of the helpers bound to the branch; its owner signs off on requests.
        ("GET", "/v1/branches/{branch_id}/payouts"): STAFF_OF_A,
        ("POST", "/v1/branches/{branch_id}/payouts/{payout_id}/status"): STAFF_OF_A,
        ("GET", "/v1/judge/model"): OPERATORS,
        ("POST", "/v1/judge/model"): OPERATORS,
    },
    "branch_owner": {
        **PROBES,
        ("PUT", "/v1/branches/{branch_id}"): STAFF_OF_A,
        ("GET", "/v1/branches/{branch_id}"): SIGNED_IN,
        ("GET", "/v1/branches"): Scoped(STAFF_OF_A),
        ("POST", "/v1/branches/{branch_id}/photos"): STAFF_OF_A,
        # Like the profile they belong to: anybody signed in.
        ("GET", "/v1/branches/{branch_id}/photos"): SIGNED_IN,
        ("GET", "/v1/branches/{branch_id}/photos/{photo_id}"): SIGNED_IN,
        ("DELETE", "/v1/branches/{branch_id}/photos/{photo_id}"): STAFF_OF_A,
        ("GET", "/v1/branches/{branch_id}/queue"): STAFF_OF_A,
        ("GET", "/v1/branches/{branch_id}/queue/{task_id}"): STAFF_OF_A,
        ("POST", "/v1/branches/{branch_id}/queue/{task_id}/decision"): STAFF_OF_A,
        ("POST", "/v1/branches/{branch_id}/queue/decisions"): STAFF_OF_A,
        ("PUT", "/v1/branches/{branch_id}/reviews/mine"): frozenset({Caller.CUSTOMER}),
        ("GET", "/v1/branches/{branch_id}/reviews"): SIGNED_IN,
        ("POST", "/v1/reviews/{review_id}/reply"): STAFF_OF_A,
        ("POST", "/v1/reviews/{review_id}/reports"): PERSONS,
        ("POST", "/v1/branches/{branch_id}/preference-profile"): STAFF_OF_A,
    },
    "search": {
        **PROBES,
        # Any signed-in principal searches (members' app, owners' console, kiosks).
        ("GET", "/search"): SIGNED_IN,
        ("POST", "/search"): SIGNED_IN,
        ("GET", "/suggest"): SIGNED_IN,
        ("GET", "/branches/{branch_id}"): SIGNED_IN,
        ("GET", "/branches/{branch_id}/reviews"): SIGNED_IN,
        ("GET", "/branches/{branch_id}/similar"): SIGNED_IN,
        ("GET", "/me/recommendations"): PERSONS,
        ("POST", "/admin/reindex"): OPERATORS,
    },
    "mlops": {
        **PROBES,
        ("GET", "/v1/models"): OPERATORS,
        ("GET", "/v1/models/{family}/versions/{version}"): OPERATORS,
        ("POST", "/v1/models/{family}/versions/{version}/verify"): OPERATORS,
        # Instances of every family read what to serve as they start (pack keys and
        # digests, nothing secret); the gateway routes operators only to mlops.
        ("GET", "/v1/models/{family}/deployed"): ANYONE,
        ("GET", "/v1/models/{family}/history"): OPERATORS,
        ("POST", "/v1/models/{family}/deployments"): OPERATORS,
        ("POST", "/v1/models/{family}/promote"): OPERATORS,
        ("POST", "/v1/models/{family}/rollback"): OPERATORS,
        ("GET", "/v1/models/{family}/canary"): OPERATORS,
        ("GET", "/v1/deployments/{deployment_id}"): OPERATORS,
        ("POST", "/v1/models/{family}/training-runs"): OPERATORS,
        ("GET", "/v1/training-runs"): OPERATORS,
        ("GET", "/v1/training-runs/{run_id}"): OPERATORS,
        ("POST", "/v1/training-runs/{run_id}/cancel"): OPERATORS,
    },
}
