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
    if not plan.has_changes:
        out.append(
            "[green]No changes.[/green] The cluster matches the manifests."
            + (f" ({', '.join(extra)})" if extra else "")
        )
    else:
        out.append(f"[bold]Plan:[/bold] {summary}." + (f" ({', '.join(extra)})" if extra else ""))
    return out


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
            "actions": [action_dict(a) for a in plan.actions],
            "warnings": list(plan.warnings),
        },
        indent=2,
    )
