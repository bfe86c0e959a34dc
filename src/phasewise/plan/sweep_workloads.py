"""A sweep's workloads: each entry read once (workload_spec), and the (model, workload) cells of the grid that cannot
run (images beside a text model, lengths beyond the context), each error naming the file's entry by its keys."""

from __future__ import annotations

from phasewise.errors import PhasewiseError
from phasewise.plan.goodput import WorkloadSpec, lengths_within_context, refuse_when_none_fits, workload_spec
from phasewise.plan.sweep_config import SweepConfig


def sweep_field(field: str) -> str:
    """A workload field as a sweep entry names it (workload_spec's `name`): its key, the trace's `trace`."""
    return "trace" if field == "workload" else field


# the image flags workload/images.py names in its errors, as a sweep workload's keys
_IMAGE_KEYS = {"--images-per-request": "images_per_request", "--image-size": "image_size",
               "--image-share": "image_share", "--image-tokens-included": "image_tokens_included"}


def _keyed(exc: PhasewiseError) -> str:
    """An error about a workload with the image settings named by the entry's keys, not plan's flags."""
    message = str(exc)
    for flag, key in _IMAGE_KEYS.items():
        message = message.replace(flag, key)
    return message


def _entry(cfg: SweepConfig, index: int, exc: PhasewiseError) -> PhasewiseError:
    """An error about workload entry `index`, naming the file and the entry as a schema error does (and the image
    settings by the entry's keys, not plan's flags)."""
    return PhasewiseError(f"{cfg._source}: workloads.{index}, workload '{cfg.workloads[index].name}': {_keyed(exc)}")


def _workloads(cfg: SweepConfig) -> list[WorkloadSpec]:
    """Each workload once (its trace read once), whatever the models and chips it runs on; two of one name are a
    one-line error (the rows name their workload by it: they could not be told apart)."""
    names = [w.name for w in cfg.workloads]
    twice = next((name for index, name in enumerate(names) if name in names[:index]), None)
    if twice is not None:
        raise PhasewiseError(f"{cfg._source}: workloads.{names.index(twice, names.index(twice) + 1)}: the name "
                             f"'{twice}' is given twice (each workload needs a name of its own: the rows name it)")
    works = []
    for index, w in enumerate(cfg.workloads):
        try:
            works.append(workload_spec(w.trace, w.arrivals, w.isl, w.osl, w.isl_dist, w.osl_dist, w.isl_spread,
                                       w.osl_spread, cfg.seed, images_per_request=w.images_per_request,
                                       image_size=w.image_size, image_share=w.image_share,
                                       image_tokens_included=w.image_tokens_included, name=sweep_field))
        except PhasewiseError as exc:
            raise _entry(cfg, index, exc) from None
    return works


def _check_model(model: str, works: list[WorkloadSpec], cfg: SweepConfig) -> dict[int, PhasewiseError]:
    """Each workload on `model`: mean lengths and, for a trace, at least one request within its context; images
    its processor takes. The refusal of each workload `model` cannot run, by its index."""
    from phasewise.specs import load_model

    spec = load_model(model)
    context = spec.max_position_embeddings
    refused = {}
    for index, (w, work) in enumerate(zip(cfg.workloads, works)):
        try:
            lengths_within_context(w.isl, w.osl, context, "isl + osl", f"{model}'s")
            refuse_when_none_fits(work, context, f"{model}'s")
            if work.images is not None:  # a text model, or a size its processor refuses
                work.images.geometries(spec)
        except PhasewiseError as exc:
            refused[index] = exc
    return refused


def _cells_refused(cfg: SweepConfig, works: list[WorkloadSpec]) -> dict[tuple[str, int], str]:
    """The (model, workload index) cells whose model cannot run the workload (images beside a text model, lengths
    beyond its context: _check_model), each with its reason, the entry's keys named: rows of kind none, as a cell
    with no strategy is. A workload no model of the grid runs is a one-line error naming the entry (the first
    model's refusal): it applies to no cell of the grid."""
    refused = {model: _check_model(model, works, cfg) for model in cfg.models}
    for index in range(len(works)):
        if all(index in by_index for by_index in refused.values()):
            raise _entry(cfg, index, refused[cfg.models[0]][index])
    return {(model, index): f"workload '{cfg.workloads[index].name}': {_keyed(exc)}"
            for model, by_index in refused.items() for index, exc in by_index.items()}
