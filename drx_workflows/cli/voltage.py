"""``drx voltage``: average Li-intercalation voltage of a composition, from DFT and from every potential."""

from __future__ import annotations

import json

import click

from drx_workflows.errors import DrxError


@click.command("voltage")
@click.argument("composition", required=False)
@click.option("--all", "all_compositions", is_flag=True, help="Every composition of the store (for `drx report`).")
@click.option("--potential", "which", default="all", show_default=True,
              help="Stored potentials to use: all, none, or backends/labels/ids (comma-separated).")
@click.option("--li-reference", type=click.Choice(["potential", "dft", "both"]), default="both", show_default=True,
              help="bcc Li of a potential's voltage: relaxed with the potential, the reference task's (DFT or surrogate; label \", ref Li\"), or both.")
@click.option("--fmax", type=float, default=0.05, show_default=True, help="Force criterion of potential relaxations (eV/A).")
@click.option("--steps", type=int, default=300, show_default=True, help="Maximum steps of a potential relaxation.")
@click.option("--max-per-state", type=int, help="Relax at most this many LiTMO2 and TMO2 orderings per composition.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the results as JSON here.")
@click.pass_context
def voltage_cmd(ctx, composition, all_compositions, which, li_reference, fmax, steps, max_per_state, json_path):
    """Average voltage of LiTMO2 <-> TMO2 + Li for COMPOSITION (e.g. LiMn0.5Ni0.5O2 or Mn0.5Ni0.5).

    The DFT value comes from the lowest-energy LiTMO2 and TMO2 task documents and the bcc Li
    reference (`drx submit --references`); each stored potential relaxes the composition's
    enumerated orderings and bcc Li itself.  Potential results are kept in the store and shown
    by `drx report`.
    """
    from drx_workflows.fileio import atomic_write_text
    from drx_workflows.pipeline import voltages as pipeline_voltages
    from drx_workflows.store import voltages as stored
    from drx_workflows.store.client import open_store
    from drx_workflows.voltages import energies

    if bool(composition) == bool(all_compositions):
        raise DrxError("give one COMPOSITION (e.g. LiMn0.5Ni0.5O2) or --all")
    key = energies.parse_composition(composition) if composition else None
    store = open_store(ctx.obj["store_config"])
    results, failures, first_error = [], [], None
    if key:
        try:
            r = stored.dft_voltage(store, key)
            results.append(r)
            click.echo(energies.format_result(r))
        except DrxError as exc:
            first_error = str(exc)
            failures.append(f"Li{key}O2 DFT: {exc}")
    else:
        refs, problems = stored.dft_voltages(store)
        results += refs
        for r in refs:
            click.echo(energies.format_result(r))
        failures += [f"Li{k}O2 DFT: {msg}" for k, msg in problems.items()]
    if which != "none" and store.potentials.count_documents({}):
        kwargs = {"fmax": fmax, "steps": steps, "max_per_state": max_per_state}
        modes = energies.LI_REFERENCES if li_reference == "both" else (li_reference,)
        if li_reference == "dft":
            stored.li_reference_energy(store)  # "cannot compute voltage: missing the bcc Li reference ..."
        pred, problems = [], {}
        for mode in modes:
            if mode == "dft" and li_reference == "both":
                try:
                    stored.li_reference_energy(store)
                except DrxError:
                    continue  # no reference task: the potential's own Li only
            # the second mode reuses the relaxations cached by the first
            p, probs = pipeline_voltages.potential_voltages(store, keys=[key] if key else None, which=which, li_reference=mode, **kwargs)
            pred += p
            problems.update(probs)
        results += pred
        ref = {r.composition: r.voltage for r in results if r.source in ("dft", "surrogate")}
        for r in pred:
            diff = f"; {r.voltage - ref[r.composition]:+.3f} V vs reference" if r.composition in ref else ""
            click.echo(energies.format_result(r) + diff)
        failures += [f"Li{k}O2 {label}: {msg}" for (label, k), msg in problems.items()]
    if not results:
        raise DrxError(first_error or (failures[0] if failures else "cannot compute voltage: no composition has data"))
    for line in failures:
        click.echo(line, err=True)
    if json_path:
        atomic_write_text(json_path, json.dumps([r.to_doc() for r in results], indent=2, default=str))


COMMANDS = [voltage_cmd]
