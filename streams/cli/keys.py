"""`agentlog keys create | list | revoke`: the gateway's per-tenant API keys."""

from __future__ import annotations

import json

import click

from streams.api_keys import ROLES, KeyStore, api_keys_file
from streams.cli.common import Context, fail, pass_ctx
from streams.render import rows_table

__all__ = ["keys"]


@click.group("keys")
def keys() -> None:
    """API keys of the HTTP gateway (stored hashed; a key is shown once)."""


@keys.command("create")
@click.option("--tenant", required=True, help="The tenant whose runs the key may see and make.")
@click.option("--name", required=True, help="Who or what uses the key (recorded as requester).")
@click.option("--role", "roles", multiple=True, type=click.Choice(ROLES),
              help="Repeatable; default: all of submit, read, approve.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def create(ctx: Context, tenant: str, name: str, roles: tuple[str, ...], as_json: bool) -> None:
    """Make a key and print its secret (the only time it is shown)."""
    try:
        key, secret = KeyStore(api_keys_file(ctx.settings)).create(
            tenant_id=tenant, name=name, roles=roles or ROLES)
    except ValueError as exc:
        fail(str(exc))
    if as_json:
        click.echo(json.dumps({"id": key.id, "tenant_id": key.tenant_id, "roles": list(key.roles),
                               "secret": secret}))
        return
    ctx.console.print(f"key {key.id} for tenant {key.tenant_id} ({', '.join(key.roles)}):\n{secret}")


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def list_keys(ctx: Context, as_json: bool) -> None:
    """Keys by id, tenant and roles (never their secrets)."""
    found = KeyStore(api_keys_file(ctx.settings)).keys()
    if as_json:
        click.echo(json.dumps([{"id": k.id, "name": k.name, "tenant_id": k.tenant_id,
                                "roles": list(k.roles)} for k in found]))
        return
    ctx.console.print(rows_table(["id", "name", "tenant", "roles"],
                                 [[k.id, k.name, k.tenant_id, ", ".join(k.roles)] for k in found]))


@keys.command("revoke")
@click.argument("key_id")
@pass_ctx
def revoke(ctx: Context, key_id: str) -> None:
    """Revoke a key: the gateway refuses it from its next request on."""
    try:
        key = KeyStore(api_keys_file(ctx.settings)).revoke(key_id)
    except KeyError as exc:
        fail(str(exc.args[0]))
    ctx.console.print(f"revoked {key.id} ({key.name}, tenant {key.tenant_id})")
