"""Global association ``mutual-knn-memory``: memory banks of the whole training set; a
batch item is related to the memory rows that are its mutual k nearest neighbours."""

import torch
import torch.nn.functional as F
from pydantic import Field

from wsreid.api import GlobalAssociation, Params, Relation


def mutual_neighbours(image, text, index, bank_image, bank_text, filled, k, min_similarity):
    """Mutual k nearest memory rows of each batch item.

    ``image``, ``text``: B x d batch features; ``index``: B dataset indices;
    ``bank_image``, ``bank_text``: N x d memory; ``filled``: N bool (rows written so far).
    Similarity is the mean of the image-image and text-text cosines. Memory row j is a
    neighbour of item i when it is among i's k most similar rows (i's own row excluded)
    with similarity above ``min_similarity``, and it is mutual when i's row is among j's
    k most similar rows. Returns (B x k row indices, B x k bool: mutual neighbour).
    """
    with torch.no_grad():
        n = bank_image.shape[0]
        k = min(k, n - 1)
        rows = torch.arange(len(index), device=index.device)
        similarity = (image @ bank_image.T + text @ bank_text.T) / 2  # B x N
        similarity = similarity.masked_fill(~filled, float("-inf"))
        similarity[rows, index] = float("-inf")
        values, nearest = similarity.topk(k, dim=1)  # B x k
        # the neighbours' own k nearest rows (each row excluding itself)
        theirs = (bank_image[nearest] @ bank_image.T + bank_text[nearest] @ bank_text.T) / 2  # B x k x N
        theirs = theirs.masked_fill(~filled, float("-inf"))
        theirs.scatter_(2, nearest[..., None], float("-inf"))
        their_nearest = theirs.topk(k, dim=2).indices  # B x k x k
        mutual = (their_nearest == index[:, None, None]).any(dim=2) & (values > min_similarity)
    return nearest, mutual


class MemoryParams(Params):
    """Parameters of the mutual-kNN memory."""

    k: int = Field(3, ge=1, description="neighbours per item among the memory rows")
    min_similarity: float = Field(0.5, ge=-1.0, le=1.0, description="a neighbour's mean cosine similarity must exceed it")
    relation_weight: float = Field(0.1, gt=0.0, le=1.0, description="relation value of related pairs (the diagonal stays 1)")
    momentum: float = Field(0.5, ge=0.0, lt=1.0, description="share of the OLD memory row kept at each update")
    start_epoch: int = Field(2, ge=1, description="first epoch that relates (the epochs before fill the memory)")
    view: str = Field("base", description="view whose batch features are related")


class MutualKnnMemory(GlobalAssociation):
    """Mutual k nearest neighbours of each batch item among memory banks of the training set.

    The memory holds one image and one text feature per training pair (N x d each,
    written after every step from the detached features, with momentum), kept in the
    state so that a resumed run continues exactly. ``relate`` returns the batch rows
    followed by the memory rows related to any batch item (sorted by dataset index), with
    weights 1 on the diagonal and ``relation_weight`` for mutual neighbours. Diagnostic:
    ``related_per_item``, the mean number of related memory rows per batch item.
    """

    Params = MemoryParams

    def __init__(self, params, context):
        super().__init__(params, context)
        self.bank_image = self.bank_text = self.filled = None  # allocated at the first step
        self.items = self.related = 0

    def _allocate(self, dim, device):
        n = self.context.num_train
        self.bank_image = torch.zeros(n, dim, device=device)
        self.bank_text = torch.zeros(n, dim, device=device)
        self.filled = torch.zeros(n, dtype=torch.bool, device=device)

    def relate(self, features, batch, ctx):
        p = self.params
        if ctx.epoch < p.start_epoch or self.bank_image is None:
            return None  # the memory is still being filled
        view = features[p.view]
        index = batch.index.to(self.bank_image.device)
        nearest, mutual = mutual_neighbours(view.image.detach(), view.text.detach(), index, self.bank_image,
                                            self.bank_text, self.filled, p.k, p.min_similarity)
        b = len(index)
        in_batch = {int(j): column for column, j in enumerate(index.tolist())}
        memory_rows = sorted({int(j) for j in nearest[mutual].tolist()} - set(in_batch))
        columns = {**in_batch, **{j: b + m for m, j in enumerate(memory_rows)}}
        weights = torch.eye(b, b + len(memory_rows), device=view.image.device)
        for i, j in zip(*mutual.nonzero(as_tuple=True)):
            weights[int(i), columns[int(nearest[i, j])]] = p.relation_weight
        rows = torch.tensor(memory_rows, dtype=torch.long, device=self.bank_image.device)
        self.items += b
        self.related += int(mutual.sum())
        return Relation(image=torch.cat([view.image, self.bank_image[rows].to(view.image)]),
                        text=torch.cat([view.text, self.bank_text[rows].to(view.text)]),
                        weights=weights, view=p.view)

    def after_step(self, features, batch, ctx):
        base = features["base"]
        if self.bank_image is None:
            self._allocate(base.image.shape[1], base.image.device)
        index = batch.index.to(self.bank_image.device)
        keep = self.params.momentum * self.filled[index, None].float()  # a row written for the first time is replaced
        self.bank_image[index] = F.normalize(keep * self.bank_image[index] + (1 - keep) * base.image, dim=1)
        self.bank_text[index] = F.normalize(keep * self.bank_text[index] + (1 - keep) * base.text, dim=1)
        self.filled[index] = True

    def state_tensors(self):
        if self.bank_image is None:
            return {}
        return {"image": self.bank_image, "text": self.bank_text, "filled": self.filled}

    def load_state_tensors(self, tensors):
        if tensors:  # {} = nothing written yet (a checkpoint before the first step)
            self.bank_image, self.bank_text = tensors["image"].clone(), tensors["text"].clone()
            self.filled = tensors["filled"].clone()

    def diagnostics(self):
        out = {"related_per_item": self.related / self.items} if self.items else {}
        self.items = self.related = 0
        return out
