"""Client of the governance service (:mod:`frugalml.governance.service`) over HTTP with basic auth.

Every answer that matters (heads, geneses, requests, receipts) is signed by the server's witness key; the
client checks the signature with the key the server presented, and callers record it in the local chain.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from typing import Any

from frugalml.errors import AccessDenied, ApprovalError, AuditIntegrityError, GovernanceError
from frugalml.governance.signing import TrustedKeys

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
API = "/api/2.0/frugalml"


class GovernanceClient:
    """The governance server, as one authenticated user."""

    def __init__(self, uri: str, username: str | None = None, password: str | None = None, *,
                 fingerprint: str | None = None) -> None:  # fmt: skip
        """Connect (lazily) to a server.

        Args:
            uri: The server, e.g. ``http://127.0.0.1:5001``.
            username: Default ``$MLFLOW_TRACKING_USERNAME``.
            password: Default ``$MLFLOW_TRACKING_PASSWORD`` (never logged).
            fingerprint: The witness key's pinned fingerprint (``identity.server_fingerprint``), if any.
        """
        self.uri = uri.rstrip("/")
        self.fingerprint = fingerprint
        self.username = username or os.environ.get("MLFLOW_TRACKING_USERNAME")
        self._password = password or os.environ.get("MLFLOW_TRACKING_PASSWORD")
        self._public_text: str | None = None

    def check_pin(self) -> str:
        """Fetch the server's witness key without credentials and compare it with the pin.

        Returns:
            The fingerprint it presents.

        Raises:
            AccessDenied: No pin is configured, or the server presents another key (an impostor on the port):
                no password is sent to it.
        """
        from frugalml.governance.signing import fingerprint_of

        presented = fingerprint_of(str(self._call("GET", "/witness", anonymous=True)["public_key"]))
        if not self.fingerprint:
            raise AccessDenied(f"the governance server {self.uri} is not pinned: it presents witness key {presented}. "
                               "If that is your server (`make server` prints its key, also in "
                               "mlruns/auth/governance/witness.fingerprint), set identity.server_fingerprint: "
                               f"{presented} in conf/base/governance.yml and commit it")  # fmt: skip
        if presented != self.fingerprint:
            raise AccessDenied(f"the server at {self.uri} presents witness key {presented}, not the pinned "
                               f"{self.fingerprint}: it is not the governance server of record; nothing was sent "
                               "to it")  # fmt: skip
        return presented

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None, *, anonymous: bool = False) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self.uri + API + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.username and self._password and not anonymous:
            token = base64.b64encode(f"{self.username}:{self._password}".encode()).decode("ascii")
            request.add_header("Authorization", f"Basic {token}")
        try:
            with _NO_PROXY.open(request, timeout=60) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            try:
                message = json.loads(error.read()).get("message", "")
            except (json.JSONDecodeError, AttributeError):
                message = ""
            if error.code == 401:
                raise AccessDenied(
                    f"the governance server {self.uri} refused the credentials of "
                    f"{self.username!r}: set MLFLOW_TRACKING_USERNAME/PASSWORD"
                ) from None
            if error.code == 404 and not message:
                raise GovernanceError(
                    f"{self.uri} is not a frugalml governance server (no {API}{path}); start it with `make server`"
                ) from None
            if error.code == 403:
                raise AccessDenied(message or f"forbidden: {path}") from None
            raise ApprovalError(message or f"HTTP {error.code} from {path}") from None
        except OSError as error:
            raise GovernanceError(f"cannot reach the governance server {self.uri}: {error}") from None

    # --- the witness -----------------------------------------------------------------------------------
    @property
    def public_text(self) -> str:
        """The server's witness public key (fetched once).

        Returns:
            The key, base64.
        """
        if self._public_text is None:
            self._pin(str(self._call("GET", "/witness")["public_key"]))
        assert self._public_text is not None
        return self._public_text

    def _signed(self, value: Any) -> Any:
        keys = TrustedKeys()
        keys.add("witness", self.public_text)
        problem = keys.check(value, roles={"witness"})
        if problem is not None:
            raise AuditIntegrityError(f"the governance server's answer is not signed by its key: {problem}")
        return value

    def witness_state(self) -> dict[str, Any]:
        """Latest signed head and genesis.

        Returns:
            ``{"public_key", "head", "genesis"}``.

        Raises:
            AuditIntegrityError: The server's key is not the pinned one.
        """
        state = self._call("GET", "/witness")
        self._pin(str(state["public_key"]))
        return state

    def _pin(self, public_text: str) -> None:
        from frugalml.governance.signing import fingerprint_of

        if self.fingerprint and fingerprint_of(public_text) != self.fingerprint:
            raise AuditIntegrityError(f"the governance server {self.uri} presents witness key "
                                      f"{fingerprint_of(public_text)}, not the pinned identity.server_fingerprint "
                                      f"{self.fingerprint}: not the governance server of record")  # fmt: skip
        self._public_text = public_text

    def witness_anchor(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Have the witness sign a head over ``records`` (which must extend its head).

        Args:
            records: Records after the witnessed head.

        Returns:
            The signed head.

        Raises:
            AuditIntegrityError: The witness refused: the chain was rewritten or truncated.
        """
        try:
            return self._signed(self._call("POST", "/witness/anchor", {"records": records}))
        except ApprovalError as error:
            raise AuditIntegrityError(str(error)) from None

    def witness_purge(self, before: str) -> dict[str, Any]:
        """A signed genesis for a purge before ``before``.

        Args:
            before: ISO date-time.

        Returns:
            The genesis.
        """
        return self._signed(self._call("POST", "/witness/purge", {"before": before}))

    # --- governance of record --------------------------------------------------------------------------
    def governance(self) -> dict[str, Any]:
        """The server's governance config and accepted change digests.

        Returns:
            ``{"config", "accepted"}``.
        """
        return self._signed(self._call("GET", "/governance"))

    def accept_governance(self, request_id: str, digest: str) -> dict[str, Any]:
        """Consume a ``change_governance`` approval for ``digest``.

        Args:
            request_id: The approved request.
            digest: The effective governance digest.

        Returns:
            The receipt.
        """
        return self._signed(self._call("POST", "/governance/accept", {"request_id": request_id, "digest": digest}))

    # --- approvals -------------------------------------------------------------------------------------
    def request(self, operation: str, details: dict[str, Any]) -> dict[str, Any]:
        """File a request.

        Args:
            operation: The two-person operation.
            details: Its details.

        Returns:
            The signed request.
        """
        return self._signed(self._call("POST", "/requests", {"operation": operation, "details": details}))

    def requests(self) -> list[dict[str, Any]]:
        """Every request.

        Returns:
            Requests with state.
        """
        return list(self._call("GET", "/requests")["requests"])

    def get(self, request_id: str) -> dict[str, Any]:
        """One request.

        Args:
            request_id: Its id.

        Returns:
            The signed request.
        """
        return self._signed(self._call("POST", "/requests/get", {"request_id": request_id}))

    def approve(self, request_id: str, digest: str) -> dict[str, Any]:
        """Approve the details whose digest is ``digest``.

        Args:
            request_id: The request.
            digest: Digest of the details shown to the approver.

        Returns:
            The signed, approved request.
        """
        return self._signed(self._call("POST", "/requests/approve", {"request_id": request_id, "digest": digest}))

    def consume(self, request_id: str, operation: str, expect: dict[str, Any]) -> dict[str, Any]:
        """Use an approval once (atomic on the server).

        Args:
            request_id: The request.
            operation: The operation performed.
            expect: The target's detail values.

        Returns:
            The signed receipt.
        """
        return self._signed(
            self._call(
                "POST", "/requests/consume", {"request_id": request_id, "operation": operation, "expect": expect}
            )
        )

    def promote(self, model: str, version: str, request_id: str) -> dict[str, Any]:
        """Set the production alias through the governed path.

        Args:
            model: Registered model.
            version: Version.
            request_id: Approved promote_production request.

        Returns:
            The receipt.
        """
        return self._signed(
            self._call("POST", "/registry/promote", {"model": model, "version": str(version), "request_id": request_id})
        )

    def delete_runs(self, run_ids: list[str], request_id: str) -> dict[str, Any]:
        """Delete runs through the governed path.

        Args:
            run_ids: The runs.
            request_id: Approved delete_runs request.

        Returns:
            The receipt.
        """
        return self._signed(self._call("POST", "/runs/delete", {"run_ids": run_ids, "request_id": request_id}))
