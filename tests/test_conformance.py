"""Every shipped component passes the conformance kit (``wsreid.testing``), as a third
party's would: DGIA, the baselines, the standard components, the CLIP encoder (tiny
config) and the datasets (on the generated tiny synth-pedes, also rewritten in the ICFG-PEDES
and RSTPReid formats)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wsreid.docs import shipped_registry
from wsreid.testing import check_component

TINY_CLIP = {
    "embed_dim": 16,
    "vision": {"hidden": 32, "layers": 1, "heads": 2, "patch_size": 8},
    "text": {"hidden": 32, "layers": 1, "heads": 2},
    "image_size": [32, 16],
    "max_length": 16,
}

#: (kind, name, params); "{root}" and "{icfg}"/"{rstp}" are dataset directories.
CASES = [
    ("local_association", "lrc", None),
    ("local_association", "lrc", {"view": "asymmetric", "modalities": "text", "threshold_text": 0.5}),
    ("local_association", "true-identity", None),
    ("global_association", "gsrc-fr", None),
    ("global_association", "gsrc-fr", {"anchor": "both", "query_rows": "batch", "self_match": "skip_own_index"}),
    ("global_association", "cluster-pseudo-labels", {"k1": 8, "k2": 2, "min_samples": 2}),
    ("objective", "itc", {"reduction": "sum"}),
    ("objective", "sdm", {"relation": "lrc", "weight": 0.5}),
    ("objective", "triplet", {"relation": "gsrc", "positive": "hardest"}),
    ("objective", "identity-classification", None),
    ("objective", "identity-classification", {"features": "normalized"}),
    ("pair_construction", "identity", None),
    ("pair_construction", "iasc", {"augment_base": True}),
    ("pair_construction", "recorded-views", {"file": "{views}", "base_ids_key": "base_ids"}),
    ("encoder", "clip", TINY_CLIP),
    ("dataset", "synth-pedes", {"size": "tiny", "root": "{root}"}),
    ("dataset", "cuhk-pedes", {"root": "{root}", "check_images": "decode"}),
    ("dataset", "icfg-pedes", {"root": "{icfg}"}),
    ("dataset", "rstpreid", {"root": "{rstp}"}),
]


@pytest.fixture(scope="module")
def registry():
    return shipped_registry()


@pytest.fixture(scope="module")
def dataset_roots(synth_tiny_root, tmp_path_factory) -> dict[str, str]:
    """The tiny synth-pedes root, and the same data in the ICFG-PEDES (train and test
    only) and RSTPReid (``img_path``, no token lists) formats."""
    records = json.loads((synth_tiny_root / "reid_raw.json").read_text())
    roots = {"root": str(synth_tiny_root)}
    for key, name, convert in (
        ("icfg", "ICFG-PEDES.json", lambda r: None if r["split"] == "val" else r),
        ("rstp", "data_captions.json",
         lambda r: {"id": r["id"], "img_path": r["file_path"], "captions": r["captions"], "split": r["split"]}),
    ):
        root = tmp_path_factory.mktemp(key)
        (root / "imgs").symlink_to(Path(synth_tiny_root) / "imgs", target_is_directory=True)
        (root / name).write_text(json.dumps([c for c in map(convert, records) if c is not None]))
        roots[key] = str(root)
    return roots


@pytest.mark.parametrize("kind, name, params", CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_shipped_component_conforms(kind, name, params, registry, request):
    if kind == "dataset":
        roots = request.getfixturevalue("dataset_roots")
        params = {k: v.format(**roots) if isinstance(v, str) else v for k, v in params.items()}
    if name == "recorded-views":  # views recorded for the kit's batch: indices 10.., 32 x 16 images, 12 tokens
        import numpy as np

        path = request.getfixturevalue("tmp_path") / "views.npz"
        gen = np.random.default_rng(0)
        np.savez(path, dataset_index=np.arange(200), images_aug=gen.standard_normal((200, 3, 32, 16)).astype("float32"),
                 mlm_ids=gen.integers(5, 60, (200, 12)), base_ids=gen.integers(5, 60, (200, 12)))
        params = {**params, "file": str(path)}
    check_component(kind, name, params, registry)


def test_every_shipped_component_is_checked(registry):
    covered = {(kind, name) for kind, name, _ in CASES}
    assert {(e.kind, e.name) for e in registry.entries()} == covered
