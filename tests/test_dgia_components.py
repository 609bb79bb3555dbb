"""The DGIA components (lrc, gsrc-fr) through the public API: relations, memory life cycle,
state round trip, diagnostics, registration."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from wsreid.api import Batch, BuildContext, StepContext, ViewFeatures
from wsreid.cli import main
from wsreid.errors import TrainingError
from wsreid.losses import cosine_similarity_matrix
from wsreid.pluginmanager import load_plugins
from wsreid_dgia import GlobalRelationConstruction, LocalRelationConstruction
from wsreid_dgia.functional import gsrc_loss, lrc_relation, mine_neighbours
from wsreid_standard.components import SdmObjective


def ctx(epoch: int) -> StepContext:
    return StepContext(epoch=epoch, step=0, num_epochs=3, dist=None)


def make_batch(index, person_id=None, image_id=None) -> Batch:
    index = torch.as_tensor(index)
    pid = index.clone() if person_id is None else torch.as_tensor(person_id)
    iid = index.clone() if image_id is None else torch.as_tensor(image_id)
    empty = torch.zeros(0)
    return Batch(images=empty, input_ids=empty, attention_mask=empty, index=index, image_id=iid, person_id=pid)


def feats(image, text) -> dict[str, ViewFeatures]:
    return {"base": ViewFeatures(F.normalize(image, dim=1), F.normalize(text, dim=1))}


HAND_IMAGE = torch.tensor([[1.0, 0.0, 0.0], [0.95, 0.1, 0.0], [1.0, 0.05, 0.0], [0.0, 0.0, 1.0]])
HAND_TEXT = torch.tensor([[0.0, 1.0, 0.0], [0.1, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.05]])


# ----------------------------------------------------------------------------- lrc


def test_lrc_relation_stats_and_precision_diagnostics():
    comp = LocalRelationConstruction(LocalRelationConstruction.Params(), BuildContext())
    f = feats(HAND_IMAGE, HAND_TEXT)
    rel = comp.relate(f, make_batch([0, 1, 2, 3], [5, 5, 6, 7]), ctx(1))
    assert rel.image is f["base"].image and rel.text is f["base"].text and rel.view == "base"
    assert torch.allclose(rel.weights, lrc_relation(HAND_IMAGE, HAND_TEXT))
    assert rel.stats == {"related_pairs": 2.0}
    comp.relate(f, make_batch([0, 1, 2, 3], [5, 6, 6, 7]), ctx(1))  # the related pair is wrong here
    assert comp.diagnostics() == {"related_pairs_per_batch": 2.0, "related_share": pytest.approx(100 * 4 / 24),
                                  "relation_precision": 50.0,  # 4 of 2 x 12 ordered pairs related
                                  "relation_precision_other_images": 50.0}  # every pair holds two images
    assert comp.diagnostics() == {}
    # the related pair (rows 0 and 1) as two captions of one image: right, but trivially so
    comp.relate(f, make_batch([0, 1, 2, 3], [5, 5, 6, 7], image_id=[4, 4, 5, 6]), ctx(1))
    comp.relate(f, make_batch([0, 1, 2, 3], [5, 6, 6, 7]), ctx(1))
    assert comp.diagnostics() == {"related_pairs_per_batch": 2.0, "related_share": pytest.approx(100 * 4 / 24),
                                  "relation_precision": 50.0, "relation_precision_other_images": 0.0}


def test_lrc_threshold_percentile_relates_as_the_functional_and_logs_its_thresholds():
    params = LocalRelationConstruction.Params(threshold_image=-1.0, threshold_text=0.9, threshold_percentile=50.0)
    comp = LocalRelationConstruction(params, BuildContext())
    f = feats(HAND_IMAGE, HAND_TEXT)
    rel = comp.relate(f, make_batch([0, 1, 2, 3], [5, 5, 6, 7]), ctx(1))
    assert torch.equal(rel.weights, lrc_relation(HAND_IMAGE, HAND_TEXT, -1.0, 0.9, threshold_percentile=50.0))
    image_cos = cosine_similarity_matrix(HAND_IMAGE, HAND_IMAGE)[~torch.eye(4, dtype=torch.bool)]
    median = float(torch.quantile(image_cos, 0.5))
    assert -1.0 < median < 0.9  # the percentile binds on images; on texts the fixed 0.9 stays above it
    assert float(torch.quantile(cosine_similarity_matrix(HAND_TEXT, HAND_TEXT)[~torch.eye(4, dtype=torch.bool)], 0.5)) < 0.9
    diag = comp.diagnostics()
    assert diag["threshold_image"] == pytest.approx(median) and diag["threshold_text"] == 0.9
    assert diag["related_share"] == pytest.approx(100 * rel.stats["related_pairs"] / 12)
    assert "threshold_image" not in LocalRelationConstruction(LocalRelationConstruction.Params(), BuildContext()).diagnostics()


def test_lrc_state_remembers_the_runaway_warning(capsys):
    comp = LocalRelationConstruction(LocalRelationConstruction.Params(threshold_image=-1.0, threshold_text=-1.0), BuildContext())
    assert comp.state_tensors() == {"runaway_warned": torch.tensor([0])}
    comp.relate(feats(HAND_IMAGE, HAND_TEXT), make_batch(range(4)), ctx(3))
    assert comp.diagnostics()["related_share"] == 100.0
    assert capsys.readouterr().err.startswith("warning: epoch 3: lrc (view base, thresholds -1.0 / -1.0) related 100.0 %")
    restored = LocalRelationConstruction(comp.params, BuildContext())
    restored.load_state_tensors(comp.state_tensors())
    restored.relate(feats(HAND_IMAGE, HAND_TEXT), make_batch(range(4)), ctx(4))
    assert restored.diagnostics()["related_share"] == 100.0 and capsys.readouterr().err == ""
    restored.load_state_tensors({})  # a checkpoint from before this state: nothing to restore
    with pytest.raises(TrainingError, match="expected \\['runaway_warned'\\]"):
        restored.load_state_tensors({"step": torch.tensor([1])})


def test_lrc_reads_its_view():
    comp = LocalRelationConstruction(LocalRelationConstruction.Params(view="asymmetric", modalities="image"), BuildContext())
    f = {"base": ViewFeatures(torch.eye(4), torch.eye(4)), "asymmetric": ViewFeatures(F.normalize(HAND_IMAGE, dim=1), torch.eye(4, 3))}
    rel = comp.relate(f, make_batch(range(4)), ctx(1))
    assert rel.view == "asymmetric" and rel.stats["related_pairs"] == 6.0  # images 0, 1, 2 agree


# ----------------------------------------------------------------------------- gsrc-fr


def clustered(n, d, seed, groups=4, noise=0.3):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(groups, d, generator=g)
    labels = torch.randint(0, groups, (n,), generator=g)
    return centres[labels] + noise * torch.randn(n, d, generator=g), labels


def gsrc(num_train=24, **params) -> GlobalRelationConstruction:
    return GlobalRelationConstruction(GlobalRelationConstruction.Params(**params), BuildContext(num_train=num_train))


def fill(comp, image, text, person_ids, batch_size=8):
    for start in range(0, image.shape[0], batch_size):
        idx = torch.arange(start, min(start + batch_size, image.shape[0]))
        comp.after_step(feats(image[idx], text[idx]), make_batch(idx, person_ids[idx]), ctx(1))


def test_memory_life_cycle_matches_functional_reference():
    image, labels = clustered(24, 8, 0)
    text = image + 0.1 * torch.randn(24, 8, generator=torch.Generator().manual_seed(1))
    comp = gsrc(memory_dtype="fp32")
    idx = torch.tensor([2, 5, 11, 19])
    assert comp.relate(feats(image[idx], text[idx]), make_batch(idx), ctx(1)) is None  # epoch 1: fill only
    fill(comp, image, text, labels)
    assert torch.allclose(comp.image_memory, F.normalize(image, dim=1))
    assert bool(comp.written.all()) and torch.equal(comp.person_ids, labels)

    new_image = image[idx] + 0.05 * torch.randn(4, 8, generator=torch.Generator().manual_seed(2))
    f = feats(new_image, text[idx])
    rel = comp.relate(f, make_batch(idx, labels[idx]), ctx(2))
    assert rel is not None and rel.weights.shape[0] == rel.weights.shape[1] == rel.image.shape[0] > 4
    loss = SdmObjective(SdmObjective.Params(relation="g"), BuildContext()).loss(f, {"g": rel}, make_batch(idx), ctx(2))
    memory_i, memory_t = F.normalize(image, dim=1), F.normalize(text, dim=1)
    assert loss.item() == pytest.approx(gsrc_loss(f["base"].image, f["base"].text, memory_i, memory_t).item(), rel=1e-5)
    assert rel.stats["neighbours"] == rel.image.shape[0] - 4

    before = comp.image_memory.clone()
    comp.after_step(f, make_batch(idx, labels[idx]), ctx(2))
    assert torch.allclose(comp.image_memory[idx], 0.9 * f["base"].image + 0.1 * before[idx], atol=1e-6)
    untouched = torch.ones(24, dtype=torch.bool)
    untouched[idx] = False
    assert torch.equal(comp.image_memory[untouched], before[untouched])


def test_gradient_reaches_batch_rows_only_and_query_rows_option():
    image, labels = clustered(24, 8, 3)
    comp = gsrc(query_rows="batch")
    fill(comp, image, image, labels)
    idx = torch.tensor([0, 1, 2])
    raw = image[idx].clone().requires_grad_()
    f = {"base": ViewFeatures(F.normalize(raw, dim=1), F.normalize(image[idx], dim=1))}
    rel = comp.relate(f, make_batch(idx), ctx(2))
    assert rel.weights.shape == (3, rel.image.shape[0]) and comp.image_memory.dtype == torch.float16
    SdmObjective(SdmObjective.Params(relation="g"), BuildContext()).loss(f, {"g": rel}, make_batch(idx), ctx(2)).backward()
    assert raw.grad is not None and raw.grad.abs().sum() > 0
    assert not comp.image_memory.requires_grad


@pytest.mark.parametrize("similarity_dtype, kept", [("fp32", 2), ("fp16", 1)])
def test_similarity_dtype_reaches_the_threshold_test(similarity_dtype, kept):
    """Rows 1 and 2 of the image bank sit at cosine 0.7003 and 0.7012 from row 0; in float16
    the first equals the rounded 0.7 and is not kept (the reference profile's setting)."""
    def at(c):
        return [c, (1.0 - c * c) ** 0.5]

    image = torch.tensor([[1.0, 0.0], at(0.7003), at(0.7012), at(-0.5)])
    comp = gsrc(num_train=4, memory_dtype="fp32", similarity_dtype=similarity_dtype)
    fill(comp, image, image, torch.arange(4))
    idx = torch.tensor([0])
    rel = comp.relate(feats(image[idx], image[idx]), make_batch(idx), ctx(2))
    assert rel.image.shape[0] == 1 + kept


def test_unwritten_rows_are_never_mined_and_are_filled_later():
    image, labels = clustered(24, 8, 4)
    comp = gsrc(memory_dtype="fp32")
    fill(comp, image[:12], image[:12], labels[:12])  # rows 12..23 never written in epoch 1
    idx = torch.arange(12, 18)
    rel = comp.relate(feats(image[idx], image[idx]), make_batch(idx), ctx(2))
    nb = mine_neighbours(image[idx], image[idx], comp.image_memory, comp.text_memory, usable=comp.written)
    assert torch.all(nb.index[nb.valid] < 12)
    assert rel.image.shape[0] == 6 + int(nb.valid.sum())
    comp.after_step(feats(image[idx], image[idx]), make_batch(idx, labels[idx]), ctx(2))
    assert torch.allclose(comp.image_memory[idx], F.normalize(image[idx], dim=1))  # filled, not mixed with zeros


@pytest.mark.parametrize("memory_dtype", ["fp16", "fp32"])
@pytest.mark.parametrize("anchor", ["image", "text"])
@pytest.mark.parametrize("scoring_dtype", ["auto", "bf16"])  # bf16: candidates re-scored with the kept row norms
def test_scoring_copy_follows_updates_and_resume_on_raw_features(memory_dtype, anchor, scoring_dtype):
    # raw (un-normalised) features of varying norm; the ranking bank changes by momentum
    image, labels = clustered(24, 8, 7)
    image = image * torch.linspace(0.5, 4.0, 24)[:, None]
    text = image + 0.1 * torch.randn(24, 8, generator=torch.Generator().manual_seed(8))
    comp = gsrc(memory_dtype=memory_dtype, anchor=anchor, scoring_dtype=scoring_dtype)
    fill(comp, image, text, labels)
    for step, idx in enumerate([torch.tensor([2, 5, 11, 19]), torch.tensor([0, 5, 7, 23])]):
        f = feats(image[idx] * 1.3 + 0.2 * randn_like(idx, 8, step), text[idx])
        rel = comp.relate(f, make_batch(idx, labels[idx]), ctx(2))
        nb = mine_neighbours(f["base"].image, f["base"].text, comp.image_memory, comp.text_memory, anchor=anchor)
        assert rel.image.shape[0] == 4 + int(nb.count.sum())  # same neighbours as normalising the bank now
        memory = comp.text_memory if anchor == "text" else comp.image_memory
        want = torch.cat([F.normalize(f["base"].image, dim=1), F.normalize(comp.image_memory[nb.index[nb.valid]].float(), dim=1)])
        assert torch.allclose(rel.image, want, atol=1e-6) and memory.dtype == comp.image_memory.dtype
        comp.after_step(f, make_batch(idx, labels[idx]), ctx(2))
        if scoring_dtype == "bf16":  # the kept norms are those of the stored rows, bit for bit
            assert torch.equal(comp._norms, torch.linalg.vector_norm(memory.float(), dim=1))
    resumed = gsrc(memory_dtype=memory_dtype, anchor=anchor, scoring_dtype=scoring_dtype)
    resumed.load_state_tensors({k: v.clone() for k, v in comp.state_tensors().items()})
    idx = torch.tensor([1, 5, 9])
    a = comp.relate(feats(image[idx], text[idx]), make_batch(idx), ctx(3))
    b = resumed.relate(feats(image[idx], text[idx]), make_batch(idx), ctx(3))
    assert torch.equal(a.weights, b.weights) and torch.equal(a.image, b.image) and a.image.shape[0] > 3


def randn_like(idx, d, seed):
    return torch.randn(idx.numel(), d, generator=torch.Generator().manual_seed(100 + seed))


def test_relation_accuracy_diagnostics_hand_case():
    # memory rows: 0 and 1 close to anchor direction e0, row 2 close to e1; rows 0, 1 persons 7, 8
    memory = torch.tensor([[1.0, 0.0], [1.0, 0.05], [0.98, 0.1], [0.0, 1.0], [0.05, 1.0], [0.1, 0.98]])
    comp = gsrc(num_train=6, top_k=2)
    comp.after_step(feats(memory, memory), make_batch(range(6), [7, 8, 7, 9, 9, 1]), ctx(1))
    # anchors: row 0 (person 7) -> neighbours ranks 2, 3 = rows 1 (8) and 2 (7): 1 of 2 correct
    #          row 3 (person 9) -> rows 4 (9), 5 (1): 1 of 2 correct
    comp.relate(feats(memory[[0, 3]], memory[[0, 3]]), make_batch([0, 3], [7, 9]), ctx(2))
    d = comp.diagnostics()
    assert d == {"neighbours_per_item": 2.0, "items_with_neighbours": 100.0, "relation_accuracy": 50.0,
                 "same_image_links": 0.0, "relation_accuracy_other_images": 50.0}
    assert comp.diagnostics() == {}


def test_links_to_the_anchors_own_image_are_counted_apart():
    # rows 0-1: two captions of image 10 (person 7); row 2: another image of person 7; row 3:
    # an image of person 8. The anchor is row 1's pair; its own row is ranked first only by
    # luck of ties, so skip_first_rank may keep it - either way both rows of image 10 are links
    # to the anchor's own image, not neighbours it found. The images come from the build context.
    memory = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.99, 0.1], [0.97, 0.2], [0.0, 1.0]])
    for image_ids in ((10, 10, 11, 12, 13), None):
        comp = GlobalRelationConstruction(GlobalRelationConstruction.Params(top_k=3),
                                          BuildContext(num_train=5, train_image_ids=image_ids))
        comp.after_step(feats(memory, memory), make_batch(range(5), [7, 7, 7, 8, 9]), ctx(1))
        comp.relate(feats(memory[[1]], memory[[1]]), make_batch([1], [7]), ctx(2))
        kept = comp._pending[0][0][0].tolist()  # the neighbour rows: the tie order decides which row of image 10 stays
        assert sorted(kept)[1:] == [2, 3] and kept_is_own(kept)
        d = comp.diagnostics()
        # ranks 1-4: rows 0 and 1 (tied), 2, 3; rank 1 dropped -> one row of image 10, row 2, row 3
        assert d["neighbours_per_item"] == 3.0
        assert d["relation_accuracy"] == pytest.approx(100 * 2 / 3)  # image 10 and row 2 are person 7
        if image_ids is not None:
            assert d["same_image_links"] == pytest.approx(100 / 3)
            assert d["relation_accuracy_other_images"] == 50.0  # rows 2 (right) and 3 (wrong)
        else:  # images unknown (e.g. the conformance kit): only the anchor's own row is its image
            assert d["same_image_links"] == (pytest.approx(100 / 3) if 1 in kept else 0.0)


def kept_is_own(kept) -> bool:
    return (0 in kept) != (1 in kept)  # exactly one row of image 10


def test_state_round_trip_and_errors():
    image, labels = clustered(24, 8, 5)
    comp = gsrc()
    assert comp.state_tensors() == {}
    fill(comp, image, image, labels)
    state = {k: v.clone() for k, v in comp.state_tensors().items()}
    assert set(state) == {"image_memory", "text_memory", "written", "person_ids"}
    resumed = gsrc()
    resumed.load_state_tensors(state)
    idx = torch.tensor([1, 4, 9])
    a = comp.relate(feats(image[idx], image[idx]), make_batch(idx), ctx(2))
    b = resumed.relate(feats(image[idx], image[idx]), make_batch(idx), ctx(2))
    assert torch.equal(a.weights, b.weights) and torch.equal(a.image, b.image)
    with pytest.raises(TrainingError, match="rows"):
        gsrc(num_train=10).load_state_tensors(state)
    with pytest.raises(TrainingError, match="expected"):
        gsrc().load_state_tensors({"image_memory": state["image_memory"]})
    with pytest.raises(TrainingError, match="num_train"):
        GlobalRelationConstruction(GlobalRelationConstruction.Params(), BuildContext()).after_step(
            feats(image[:2], image[:2]), make_batch([0, 1]), ctx(1)
        )


def test_start_epoch_and_defaults():
    p = GlobalRelationConstruction.Params()
    assert (p.top_k, p.threshold, p.momentum, p.gamma, p.start_epoch, p.memory_dtype) == (3, 0.7, 0.9, 1.0, 2, "fp16")
    assert (p.anchor, p.query_rows, p.self_match) == ("image", "all", "skip_first_rank")
    q = LocalRelationConstruction.Params()
    assert (q.threshold_image, q.threshold_text, q.relation_weight, q.modalities) == (0.7, 0.7, 0.1, "image+text")
    with pytest.raises(ValidationError, match=r"start_epoch\n  Input should be greater than or equal to 2"):
        GlobalRelationConstruction.Params(start_epoch=1)  # epoch 1 only fills the memory
    image, labels = clustered(24, 8, 6)
    comp = gsrc(start_epoch=3)
    fill(comp, image, image, labels)
    idx = torch.tensor([0, 1])
    assert comp.relate(feats(image[idx], image[idx]), make_batch(idx), ctx(2)) is None
    assert comp.relate(feats(image[idx], image[idx]), make_batch(idx), ctx(3)) is not None


def test_components_are_registered_by_name():
    registry = load_plugins().registry
    assert registry.get("local_association", "lrc").cls is LocalRelationConstruction
    assert registry.get("global_association", "gsrc-fr").cls is GlobalRelationConstruction
    assert registry.get("pair_construction", "iasc").cls.__name__ == "InformationAsymmetricPairs"
    for kind, name in [("objective", "itc"), ("objective", "sdm"), ("pair_construction", "identity")]:
        assert (kind, name) in registry
    for entry in registry.entries():
        if entry.provider in ("dgia", "standard"):
            for fname, field in entry.params_model.model_fields.items():
                assert field.description, f"{entry.kind} {entry.name}.{fname} lacks a description"


@pytest.mark.parametrize(("value", "bound"), [("100", "less than 100"), ("0", "greater than 0")])
def test_lrc_threshold_percentile_out_of_range_is_one_line(value, bound, capsys):
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "dgia.yaml"
    key = "local_associations.lrc.threshold_percentile"
    assert main(["validate", str(recipe), "-o", f"{key}={value}"]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [f"error: override -o {key}={value}: {key}: input should be {bound} (got {value})"]
    assert captured.out == ""


def test_auto_scoring_is_float32_for_small_banks_on_every_cpu(monkeypatch):
    # bf16 and fp32 scoring break exact ties (an image's two caption rows) differently, so
    # `auto` must not pick bf16 for the benchmark's 4,246-row banks on a CPU with AMX
    import wsreid_dgia.memory as memory

    comp = gsrc(num_train=4246)
    for amx in (False, True):
        monkeypatch.setattr(memory, "_cpu_has_bf16_matrix_units", lambda amx=amx: amx)
        assert comp._scoring_dtype(torch.device("cpu"), 4246) == torch.float32
        assert comp._scoring_dtype(torch.device("cpu"), 16383) == torch.float32
        assert comp._scoring_dtype(torch.device("cpu"), 16384) == (torch.bfloat16 if amx else torch.float32)


@pytest.mark.parametrize("amx, avx512_bf16, fast", [(False, False, False), (True, False, True), (False, True, True)])
def test_auto_scoring_counts_avx512_bf16_as_bfloat16_matrix_units(monkeypatch, amx, avx512_bf16, fast):
    """`auto` scored 68k-row banks in float32 on AMD EPYC with AVX512_BF16 (no AMX), where the
    bfloat16 path took 20.5 ms against 47.4 ms (python benchmarks/performance.py --only mining,
    docs/performance.md)."""
    import wsreid_dgia.memory as memory

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    assert memory._cpu_has_bf16_matrix_units() is fast
    comp = gsrc(num_train=68126)
    assert comp._scoring_dtype(torch.device("cpu"), 68126) == (torch.bfloat16 if fast else torch.float32)
    assert comp._scoring_dtype(torch.device("cpu"), 4246) == torch.float32
