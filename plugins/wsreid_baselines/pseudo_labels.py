"""Global association ``cluster-pseudo-labels``: the ICPG / CMMT baseline (docs/ablations.md).

Before each epoch the whole training set is encoded without augmentation, the image
features are clustered (k-reciprocal Jaccard distance + DBSCAN, see ``clustering.py``) and
every dataset index gets a pseudo identity. Labels belong to images: all captions of an
image share its label, and a DBSCAN outlier image gets a label of its own, so it relates
only to itself (its own captions). Labels are stored BY DATASET INDEX and looked up
through ``batch.index``, never by loader order (a known pitfall of this family).

The clustering runs over caption-level rows, as the family's code does (ICPG clusters the
output of IRRA's caption-level loader): an image with two captions is two identical rows,
so the neighbour lists of ``k1`` and DBSCAN's ``min_samples`` count rows, not images. With
two captions per image (CUHK-PEDES, RSTPReid, synth-pedes) N(i, 30) holds about 15 other
images and ``min_samples: 4`` is met by two images; with one (ICFG-PEDES) 30 and 4 images.
"""

from __future__ import annotations

import time
from typing import Literal, Mapping

import numpy as np
import torch
from pydantic import Field

from wsreid.api import Batch, EpochContext, GlobalAssociation, Params, Relation, StepContext, ViewFeatures
from wsreid.errors import ParamsCheckError, RecipeError, TrainingError

from wsreid_baselines.clustering import NOISE, _unique_rows, dbscan_sparse, k_reciprocal_jaccard_sparse

__all__ = ["ClusterPseudoLabels", "pseudo_labels_from_clusters", "pair_precision_recall"]


def pseudo_labels_from_clusters(cluster_ids: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """DBSCAN labels (N, -1 = outlier) -> pseudo labels (N), one label per group.

    ``groups``: N group ids, the rows of one distinct image sharing one id (caption-level
    rows repeat an image once per caption); None: every row is its own group. All rows of a
    group get one label: the cluster of its first row (lowest index) that DBSCAN clustered,
    or, when DBSCAN left every row of the group an outlier, a fresh label after the largest
    cluster id (fresh labels numbered in the order of the groups' first rows). So an
    outlier image relates to its own captions and nothing else, and clusters keep their id.
    """
    labels = np.asarray(cluster_ids, dtype=np.int64)
    n = len(labels)
    if groups is None:
        group = np.arange(n)
    else:
        groups = np.asarray(groups)
        if groups.shape != labels.shape:
            raise ValueError(f"groups must have one id per row: {groups.shape} for {labels.shape} labels")
        _, group = np.unique(groups, return_inverse=True)
        group = group.ravel()
    num_groups = int(group.max(initial=-1)) + 1
    # the first clustered row of every group (np.unique returns first occurrences)
    clustered = np.flatnonzero(labels != NOISE)
    group_label = np.full(num_groups, NOISE, dtype=np.int64)
    seen, first = np.unique(group[clustered], return_index=True)
    group_label[seen] = labels[clustered[first]]
    # groups without a clustered row: fresh labels in the order of their first rows
    _, group_first_row = np.unique(group, return_index=True)
    lone = np.flatnonzero(group_label == NOISE)
    lone = lone[np.argsort(group_first_row[lone], kind="stable")]
    group_label[lone] = int(labels.max(initial=NOISE)) + 1 + np.arange(len(lone))
    return group_label[group]


def _same_label_pairs(*label_arrays: np.ndarray) -> int:
    """Number of unordered pairs i < j that agree on every given label array."""
    keys = np.stack(label_arrays, axis=1)
    _, counts = np.unique(keys, axis=0, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def pair_precision_recall(pseudo: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Pairwise precision and recall of ``pseudo`` labels against ``truth`` (both N).

    precision = |pairs same in both| / |pairs same in pseudo| (1.0 when there are none),
    recall = |pairs same in both| / |pairs same in truth| (1.0 when there are none).
    """
    pseudo, truth = np.asarray(pseudo), np.asarray(truth)
    both = _same_label_pairs(pseudo, truth)
    predicted = _same_label_pairs(pseudo)
    actual = _same_label_pairs(truth)
    return (both / predicted if predicted else 1.0), (both / actual if actual else 1.0)


class ClusterPseudoLabels(GlobalAssociation):
    """Cluster pseudo labels (k-reciprocal Jaccard + DBSCAN on image features), by dataset index.

    ``relate`` returns the batch relation R with R_ij = 1 when items i and j share a pseudo
    label (the diagonal always), 0 otherwise; pair it with the ``sdm`` objective (docs/method.md)
    and ``triplet``. Returns None before ``start_epoch``. All captions of an image share one
    label (an outlier image: a label of its own); ``k1`` and ``min_samples`` count
    caption-level rows, as the family's code does. Neighbour counts that leave one possible
    result for the training set (``k1 >= N - 1``, ``k2 >= N``, ``min_samples > N`` for N
    training pairs) stop the run when it builds the component, before training
    (docs/reliability.md).
    """

    class Params(Params):
        k1: int = Field(
            30,
            ge=1,
            description="k of the k-reciprocal sets (the family uses 30), counted in caption-level rows as the "
            "family does: N(i, k1) holds k1 + 1 rows, i itself and its image's other captions included, so about "
            "k1 / 2 other images at two captions per image, k1 at one; below N - 1 for N training pairs (a larger k1 "
            "relates every row to every other: one cluster, an error at the start of the run)",
        )
        k2: int = Field(6, ge=1, description="neighbours averaged in local query expansion (6; 1 = none); below N "
                        "for N training pairs (N makes every row the same: one cluster, an error)")
        eps: float = Field(0.6, gt=0.0, le=1.0, description="DBSCAN radius on the Jaccard distance")
        min_samples: int = Field(
            4,
            ge=1,
            description="DBSCAN: neighbours (self included) that make a core point, counted in caption-level rows "
            "as the family does (4 = two images at two captions per image, four at one); at most N for N training "
            "pairs (more leaves every image its own pseudo identity: an error)",
        )
        start_epoch: int = Field(1, ge=1, description="first epoch (1-based) that clusters and relates")
        cluster_on: Literal["image", "text", "image+text"] = Field(
            "image",
            description="features clustered: image (as the family does), text, or both (concatenated, cos = mean of the two)",
        )
        view: str = Field("base", description="view whose batch features the relation carries")
        knn_search: Literal["exact", "bf16"] = Field(
            "exact",
            description="kNN search: exact float32, or bfloat16 candidates re-scored in float32 "
            "(several times faster on CPUs with AMX/bf16 units; docs/performance.md)",
        )

    def __init__(self, params: "ClusterPseudoLabels.Params", context):
        super().__init__(params, context)
        if context.num_train is not None:  # a ParamsCheckError at build: the run cites the parameter's line
            problem = self.size_problem(context.num_train)
            if problem is not None:
                raise ParamsCheckError(*problem)
        self.labels: torch.Tensor | None = None  # N long, pseudo label per dataset index
        self._diagnostics: dict[str, float] = {}

    def _check_sizes(self, n: int) -> None:
        """:meth:`size_problem` as a RecipeError (the rows of an epoch's features)."""
        problem = self.size_problem(n)
        if problem is not None:
            key, message, hint = problem
            raise RecipeError(f"cluster-pseudo-labels {key} {message}", hint=hint)

    def size_problem(self, n: int) -> tuple[str, str, str] | None:
        """(parameter, what is wrong, what to do) for neighbour counts that leave one
        possible result for ``n`` caption-level rows, whatever the features
        (docs/reliability.md), else None: ``k1 >= n - 1`` puts every row in every N(i, k1),
        so every row is a reciprocal neighbour of every other; ``k2 >= n`` averages every
        row's encoding over all rows, making them equal - both give one cluster for all
        data; ``min_samples > n`` makes no row a core point, so every image is its own
        pseudo identity and the relation holds only an image's own captions."""
        p = self.params
        if p.k1 >= n - 1:
            return ("k1", f"{p.k1}: N(i, k1) holds k1 + 1 rows, and the training set has only {n} pairs: every row "
                          f"is a reciprocal neighbour of every other and the clustering gives ONE cluster for all data",
                    f"lower k1 below {n - 1} (the family uses 30)")
        if p.k2 >= n:
            return ("k2", f"{p.k2}: the query expansion would average every row over all {n} training pairs, making "
                          f"every row the same and the clustering ONE cluster for all data",
                    f"lower k2 below {n} (the family uses 6)")
        if p.min_samples > n:
            return ("min_samples", f"{p.min_samples}: the training set has only {n} pairs, so no row is a core point "
                                   f"and every image becomes its own pseudo identity (no relation between images)",
                    f"lower min_samples to at most {n} (the family uses 4)")
        return None

    # -- per epoch ----------------------------------------------------------------------
    def _clustering_features(self, features: ViewFeatures) -> torch.Tensor:
        if self.params.cluster_on == "image":
            return features.image
        if self.params.cluster_on == "text":
            return features.text
        return torch.cat([features.image, features.text], dim=1) / 2.0**0.5

    def epoch_start(self, ctx: EpochContext) -> None:
        """Re-cluster the training set: the first process clusters the (gathered, identical)
        features once and broadcasts the labels, so every process holds the same labels."""
        if ctx.epoch < self.params.start_epoch:
            return
        started = time.perf_counter()
        features = ctx.extract_train_features(text=self.params.cluster_on != "image")
        x = self._clustering_features(features).detach().to("cpu", torch.float32)
        n = x.shape[0]
        if self.context.num_train is not None and n != self.context.num_train:
            raise TrainingError(
                f"cluster-pseudo-labels: feature extraction returned {n} rows for {self.context.num_train} training pairs"
            )
        self._check_sizes(n)
        # One id per distinct image: the rows repeat an image's features once per caption,
        # bit-identical (extract_train_features encodes each image once), so equal rows are
        # one image - PairRecord.image_id's grouping. Every caption gets its image's label.
        image = np.ascontiguousarray(features.image.detach().to("cpu", torch.float32).numpy())
        images = _unique_rows(image)
        p = self.params
        dist = ctx.dist
        if dist.is_main:
            # clustered on the image features, the kNN search groups the same rows: reuse the grouping
            distances = k_reciprocal_jaccard_sparse(x, p.k1, p.k2, max_distance=p.eps, search=p.knn_search,
                                                    unique=images if p.cluster_on == "image" else None)
            clusters = dbscan_sparse(distances, p.eps, p.min_samples)
        else:
            clusters = np.zeros(n, dtype=np.int64)
        shared = dist.broadcast(torch.from_numpy(np.asarray(clusters, dtype=np.int64)).to(dist.device), src=0)
        clusters = shared.cpu().numpy()
        labels = pseudo_labels_from_clusters(clusters, images[1])
        self.labels = torch.from_numpy(labels)

        outliers = clusters == NOISE
        stats = {
            "clusters": float(len(np.unique(clusters[~outliers]))),
            "outlier_share": 100.0 * float(outliers.mean()) if n else 0.0,
            "cluster_seconds": time.perf_counter() - started,
        }
        if ctx.train_person_ids is not None:
            truth = ctx.train_person_ids.detach().to("cpu").numpy()
            precision, recall = pair_precision_recall(labels, truth)
            stats["pair_precision"], stats["pair_recall"] = 100.0 * precision, 100.0 * recall
        self._diagnostics = stats

    # -- per step -----------------------------------------------------------------------
    def relate(self, features: dict[str, ViewFeatures], batch: Batch, ctx: StepContext) -> Relation | None:
        """B x B relation of the batch: 1 where pseudo labels of ``batch.index`` agree."""
        if self.labels is None or ctx.epoch < self.params.start_epoch:
            return None
        view = features[self.params.view]
        labels = self.labels.to(batch.index.device)[batch.index]
        weights = (labels[:, None] == labels[None, :]).to(view.image.dtype)
        related = float((weights.sum() - weights.shape[0]) / max(weights.shape[0], 1))
        return Relation(
            image=view.image,
            text=view.text,
            weights=weights.detach(),
            view=self.params.view,
            stats={"related_per_row": related},
        )

    # -- state --------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {} if self.labels is None else {"labels": self.labels.clone()}

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        unknown = set(tensors) - {"labels"}
        if unknown:
            raise TrainingError(f"cluster-pseudo-labels: unexpected state {sorted(unknown)} in checkpoint")
        labels = tensors.get("labels")
        if labels is not None and self.context.num_train is not None and labels.shape != (self.context.num_train,):
            raise TrainingError(
                f"cluster-pseudo-labels: checkpoint holds {tuple(labels.shape)} labels for {self.context.num_train} training pairs"
            )
        self.labels = None if labels is None else labels.detach().to("cpu", torch.long).clone()

    def diagnostics(self) -> dict[str, float]:
        stats, self._diagnostics = self._diagnostics, {}
        return stats
