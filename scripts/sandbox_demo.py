"""A short tour of a ROCK sandbox: hardening, a persistent session, a timeout that leaves nothing behind, the audit."""
from rich.console import Console

from rock import Sandbox

console = Console()
with Sandbox() as sb:
    console.rule(f"sandbox {sb.name}")
    for command in ["id; grep -E 'CapEff|NoNewPrivs' /proc/self/status", "cat /proc/net/dev | tail -n +3 | cut -d: -f1",
                    "mkdir -p demo && cd demo && export STEP=2", "pwd; echo STEP=$STEP"]:
        result = sb.run(command)
        console.print(f"[bold]$ {command}[/bold]\n{result.output.rstrip()}  [dim](exit {result.exit_code}, "
                      f"{result.duration * 1000:.1f} ms)[/dim]")
    result = sb.run("echo started; sleep 300 & sleep 200", timeout=1)
    console.print(f"[bold]$ sleep with a 1 s timeout[/bold] → timed_out={result.timed_out}, output={result.output!r}")
    console.print(f"processes left: {[p['args'] for p in sb.processes()]}")
    console.rule("audit")
    for record in sb.audit:
        console.print(f"#{record.id} {record.command[:50]!r} exit={record.exit_code} timed_out={record.timed_out} "
                      f"{record.duration * 1000:.1f} ms")
