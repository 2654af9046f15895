"""Human (rich, terraform-like) and machine (JSON) renderings of plans and state."""

from __future__ import annotations

import json
from typing import Any

from rich.markup import escape

from reconciler.plan import Action, Op, Plan

SYMBOL = {
    Op.CREATE: ("+", "green", "create"),
    Op.UPDATE: ("~", "yellow", "update in place"),
    Op.REPLACE: ("-/+", "magenta", "replace"),
    Op.DELETE: ("-", "red", "delete"),
    Op.PRUNE: ("-", "dim red", "would prune (use --prune)"),
    Op.CONFLICT: ("!", "bold red", "conflict"),
    Op.NOOP: ("=", "dim", "unchanged"),
}


def _fmt(v: Any) -> str:
    return "(none)" if v is None else json.dumps(v) if isinstance(v, str) else str(v)


def plan_lines(plan: Plan, verbose: bool = False) -> list[str]:
    """Rich-markup lines of the plan."""
    out = []
    for a in plan.actions:
        if a.op is Op.NOOP and not verbose:
            continue
        sym, style, word = SYMBOL[a.op]
        reason = f" [dim]({escape(a.reason)})[/dim]" if a.reason else ""
        out.append(f"[{style}]{sym:>3} {escape(a.ref)}[/{style}] [dim]{word}[/dim]{reason}")
        for c in a.changes:
            out.append(
                f"      {escape(c.field)}: [red]{escape(_fmt(c.old))}[/red] -> [green]{escape(_fmt(c.new))}[/green]"
            )
    counts = {op: sum(1 for a in plan.actions if a.op is op) for op in Op}
    summary = ", ".join(
        f"{counts[op]} to {name}"
        for op, name in (
            (Op.CREATE, "create"),
            (Op.UPDATE, "update"),
            (Op.REPLACE, "replace"),
            (Op.DELETE, "delete"),
        )
    )
    extra = []
    if counts[Op.PRUNE]:
        extra.append(f"{counts[Op.PRUNE]} would be pruned")
    if counts[Op.CONFLICT]:
        extra.append(f"[bold red]{counts[Op.CONFLICT]} conflict(s)[/bold red]")
    for w in plan.warnings:
        out.append(f"[yellow]warning:[/yellow] {escape(w)}")
    if plan.has_changes:
        out.append(f"[bold]Plan:[/bold] {summary}." + (f" ({', '.join(extra)})" if extra else ""))
    else:
        out.append(summary_line(plan))
    return out


def pending_prunes(plan: Plan) -> int:
    return sum(1 for a in plan.actions if a.op is Op.PRUNE)


def plan_exit_code(plan: Plan) -> int:
    """``diff``'s exit status: 0 only when apply would do nothing and nothing is in conflict, 1 for
    changes (a pending prune included), 2 for conflicts (apply refuses them)."""
    from reconciler.exitcodes import EXIT_CHANGES, EXIT_ERROR, EXIT_OK

    if plan.conflicts:
        return EXIT_ERROR
    return EXIT_CHANGES if plan.has_changes or pending_prunes(plan) else EXIT_OK


def summary_line(plan: Plan, applied: int = 0) -> str:
    """One rich-markup line saying whether the cluster matches the manifests.

    "matches" is said only when nothing is to change, nothing would be pruned and nothing conflicts;
    ``applied`` is the number of changes an apply has just made.
    """
    pruned, conflicts = pending_prunes(plan), len(plan.conflicts)
    head = f"Applied: {applied} change(s)." if applied else "[green]No changes.[/green]"
    if not pruned and not conflicts:
        return head + " The cluster matches the manifests."
    notes = []
    if pruned:
        notes.append(f"{pruned} object(s) not in the manifests would be pruned (use --prune)")
    if conflicts:
        refs = ", ".join(escape(a.ref) for a in plan.conflicts)
        notes.append(f"[bold red]{conflicts} conflict(s)[/bold red] ({refs}) left untouched")
    return f"{head} The cluster does not match the manifests: {'; '.join(notes)}."


def action_dict(a: Action) -> dict[str, Any]:
    return {
        "op": a.op.value,
        "kind": a.kind,
        "name": a.name,
        "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in a.changes],
        "reason": a.reason,
    }


def plan_json(plan: Plan) -> str:
    return json.dumps(
        {
            "changes": plan.has_changes,
            "in_sync": plan_exit_code(plan) == 0,
            "actions": [action_dict(a) for a in plan.actions],
            "warnings": list(plan.warnings),
        },
        indent=2,
    )


_DONE = {Op.CREATE: "created", Op.UPDATE: "updated", Op.REPLACE: "replaced", Op.DELETE: "deleted"}


def short_version(version: str | None) -> str:
    """A content-hash version cut to 7 characters, as git cuts commits; other versions verbatim."""
    from reconciler.desired import HASH_LENGTH

    if version is None:
        return "(none)"
    is_hash = len(version) == HASH_LENGTH and all(c in "0123456789abcdef" for c in version)
    return version[:7] + "…" if is_hash else version


def event_line(action: Action, error: BaseException | None, connected: tuple[int, int] | None) -> str:
    """One plain-text line for one executed action, as ``clipper watch`` prints it, e.g.
    ``sum-model 3f2a9c0… -> 9c1d4e2… rolled out, 2/2 connected``."""
    if error is not None:
        return f"{action.ref} {SYMBOL[action.op][2]} failed: {error}"
    m = action.model
    if action.kind == "Model" and m is not None:
        version = short_version(m.version)
        if action.op is Op.REPLACE:
            line = f"{m.name} {short_version(action.previous_version)} -> {version} rolled out"
        elif action.op is Op.CREATE:
            line = f"{m.name} {version} rolled out"
        else:
            scaled = next((c for c in action.changes if c.field == "replicas"), None)
            line = f"{m.name} {version} " + (f"scaled {scaled.old} -> {scaled.new}" if scaled else "updated")
        return line + (f", {connected[0]}/{connected[1]} connected" if connected else "")
    if action.kind == "Cluster" and action.op is Op.CREATE:
        return f"{action.ref} started"
    changes = "; ".join(f"{c.field}: {_fmt(c.old)} -> {_fmt(c.new)}" for c in action.changes)
    return f"{action.ref} {_DONE.get(action.op, action.op.value)}" + (f" ({changes})" if changes else "")
