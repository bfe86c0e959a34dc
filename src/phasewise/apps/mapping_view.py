"""Rich rendering of `estimate --mapping`: each operator on its substrate, per phase, with latency and dynamic energy
(the work's; static power is not in it), the engine's host work, and a note where that energy's mean power exceeds
the chip's TDP."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from phasewise.perf.mapping import MappedPhases


def render_mapped(console: Console, mapped: MappedPhases, headlines: dict[str, str]) -> None:
    """`headlines`: per phase, the title's opening (the iteration and its time with the host work: estimate_view)."""
    host = {"prefill": mapped.prefill_host_s, "decode": mapped.decode_host_s}
    how = "under the device's (overlap scheduling)" if mapped.host_overlapped else "after the device's"
    for it in (mapped.prefill, mapped.decode):
        table = Table(title=f"{headlines[it.phase]}; {it.energy_j * 1e3:.3f} mJ of dynamic energy "
                            f"({it.dynamic_power_w:,.0f} W)", title_justify="left")
        for col in ("operator", "class", "substrate", "time ms", "compute ms", "memory ms", "program ms",
                    "energy mJ", "programmed MB"):
            table.add_column(col, justify="left" if col in ("operator", "class", "substrate") else "right")
        for op in it.operators:
            table.add_row(op.name, op.op_class, f"{op.substrate} ({op.kind})", f"{op.time_s * 1e3:.3f}",
                          f"{op.compute_s * 1e3:.3f}", f"{op.memory_s * 1e3:.3f}", f"{op.program_s * 1e3:.3f}",
                          f"{op.energy_j * 1e3:.3f}", f"{op.programmed_bytes / 1e6:.1f}")
        for move in it.movements:
            table.add_row(f"move {move.edge}", "movement", f"{move.source} -> {move.target}",
                          f"{move.time_s * 1e3:.3f}", "", "", "", f"{move.energy_j * 1e3:.3f}", "")
        table.add_row("host overhead", "host", "engine", f"{host[it.phase] * 1e3:.3f}", "", "", "", "", "")
        console.print(table)
        console.print("  by substrate: " + ", ".join(f"{name} {t * 1e3:.3f} ms / {e * 1e3:.3f} mJ"
                                                     for name, (t, e) in it.by_substrate().items())
                      + f"; the engine's host work {host[it.phase] * 1e3:.3f} ms, {how}")
        if it.dynamic_power_w > mapped.tdp_w:
            console.print(f"  note: {it.dynamic_power_w:,.0f} W of dynamic power is over the chip's "
                          f"{mapped.tdp_w:,.0f} W TDP: its substrates' rates and energies cannot both hold within "
                          "it (throttling is not modelled)")
