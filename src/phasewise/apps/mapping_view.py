"""Rich rendering of `estimate --mapping`: each operator on its substrate, per phase, with latency and dynamic energy
(the work's; static power is not in it), and a note where that energy's mean power exceeds the chip's TDP."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from phasewise.perf.mapping import MappedPhases


def render_mapped(console: Console, mapped: MappedPhases) -> None:
    for it in (mapped.prefill, mapped.decode):
        table = Table(title=f"Mapping '{mapped.mapping}', {it.phase}: {it.latency_s * 1e3:.3f} ms, "
                            f"{it.energy_j * 1e3:.3f} mJ of dynamic energy ({it.dynamic_power_w:,.0f} W)",
                      title_justify="left")
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
        console.print(table)
        console.print("  by substrate: " + ", ".join(f"{name} {t * 1e3:.3f} ms / {e * 1e3:.3f} mJ"
                                                     for name, (t, e) in it.by_substrate().items()))
        if it.dynamic_power_w > mapped.tdp_w:
            console.print(f"  note: {it.dynamic_power_w:,.0f} W of dynamic power is over the chip's "
                          f"{mapped.tdp_w:,.0f} W TDP: its substrates' rates and energies cannot both hold within "
                          "it (throttling is not modelled)")
