"""Search your own images with a trained run: encode images and captions that are not
part of a dataset, and rank the images for each caption (docs/library.md, "Searching
your own images").

    from wsreid.retrieval import load_encoder

    encoder = load_encoder("runs/synth-dgia")
    hits = encoder.search(["a woman in a red coat with a black bag"], ["a.jpg", "b.png", ...])
    hits[0][0].path, hits[0][0].score                 # the best image for the first caption

The encoder is the one ``wsreid eval`` evaluates: the run's recipe builds it and its
selected checkpoint (``checkpoints/best`` or ``last``) is loaded. The dataset is not
needed (the tokenizer comes from the pretrained model or the run directory), so a run
directory copied to another machine searches there. Features are those of the
evaluation: L2-normalised, so a score is a cosine similarity in [-1, 1].
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from wsreid.engine.checkpoint import callers_random_state_kept
from wsreid.errors import DataError, UserError

__all__ = ["IMAGE_SUFFIXES", "Hit", "RunEncoder", "image_files", "load_encoder"]

#: file name endings taken as images when a folder is searched (any case)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def image_files(paths: Iterable[str | os.PathLike[str]], unreadable: list[str] | None = None, *,
                skipped: list[tuple[Path, str]] | None = None) -> list[Path]:
    """The images that ``paths`` name: a file as it is, a folder as the files under it
    (at any depth) whose names end in one of :data:`IMAGE_SUFFIXES`, in sorted order,
    leaving out hidden files and folders (names starting with ``.``: macOS's ``._*``
    companions, thumbnail caches) and symbolic links to folders. A path that does not
    exist, a folder that cannot be read, or a folder without images (the error names
    what was left out, when that is where its images are), is a
    :class:`~wsreid.errors.UserError`. Each
    image file is listed once, at the first path that leads to it (a symbolic link to a
    file already listed is not listed again). A folder below one of them that cannot be
    listed (no permission) is left out, and said so in ``unreadable`` (``"<folder>: cannot
    be read (<reason>)"``) when a list is given; a symbolic link below one of them whose
    target does not exist is left out, and said so in ``skipped`` (its path and
    :func:`~wsreid.data.load_image`'s line) when a list is given."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise TypeError(f"pass a list of paths, got the single path {paths!r}: write [{paths!r}]")
    found: dict[Path, Path] = {}  # the real file -> the first path that leads to it
    real = _RealPaths()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = _images_under(path, unreadable, skipped)
            if not inside:
                hidden, linked = _left_out_under(path)
                if hidden or linked:  # what the user may have meant to search
                    parts = [f"{len(hidden)} {plural(len(hidden), 'image')} in hidden files or folders (names starting with "
                             f"'.', e.g. {hidden[0]})"] if hidden else []
                    parts += [f"{len(linked)} {plural(len(linked), 'symbolic link')} to "
                              f"{'a folder' if len(linked) == 1 else 'folders'}, not followed (e.g. {linked[0]})"
                              ] if linked else []
                    raise UserError(f"{path}: no image files in this folder, leaving out {' and '.join(parts)}",
                                    hint="name those folders or files themselves to search them")
                raise UserError(f"{path}: no image files in this folder (names ending in "
                                f"{', '.join(IMAGE_SUFFIXES)})", hint="name a folder of images, or image files")
            for file in inside:
                found.setdefault(real(file), file)
        elif path.is_file():
            found.setdefault(path.resolve(), path)
        elif path.is_symlink():
            raise UserError(_broken_link(path))
        else:
            raise UserError(f"{path}: no such file or folder", hint="name image files or folders of images")
    if not found:
        raise UserError("no image paths given", hint="name image files or folders of images")
    return list(found.values())


class _RealPaths:
    """``file`` -> its real path (symbolic links resolved), resolving each folder once:
    a folder of many images costs one ``realpath`` of the folder, not one per file."""

    def __init__(self) -> None:
        self._folders: dict[Path, Path] = {}

    def __call__(self, file: Path) -> Path:
        if file.is_symlink():
            return file.resolve()
        folder = self._folders.get(file.parent)
        if folder is None:
            folder = self._folders[file.parent] = file.parent.resolve()
        return folder / file.name


def _broken_link(path: Path) -> str:
    """:func:`~wsreid.data.load_image`'s line for ``path``, a symbolic link whose target
    does not exist (``image X is a symbolic link to Y, which does not exist (...)``)."""
    from wsreid.data.images import load_image

    try:
        load_image(path)
    except DataError as exc:
        return str(exc)
    return f"image {path} is a symbolic link that cannot be followed"  # it came back meanwhile: said as it was


def _images_under(folder: Path, unreadable: list[str] | None,
                  skipped: list[tuple[Path, str]] | None = None) -> list[Path]:
    """The image files under ``folder`` at any depth, sorted, without hidden files and
    folders (names starting with ``.``; symbolic links to folders are not followed); a
    subfolder that cannot be listed goes to ``unreadable``, a symbolic link whose target
    does not exist to ``skipped``; the folder itself unreadable is a
    :class:`~wsreid.errors.UserError`."""
    problems: list[OSError] = []
    inside, broken = [], []
    for top, folders, names in os.walk(folder, onerror=problems.append):
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in names:
            path = Path(top) / name
            if name.startswith(".") or path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if path.is_file():
                inside.append(path)
            elif path.is_symlink():
                broken.append(path)
    for exc in problems:
        if Path(exc.filename or "") == folder:
            raise UserError(f"{folder}: cannot read this folder ({exc.strerror or exc})",
                            hint="give it read permission, or name another folder")
        if unreadable is not None:
            unreadable.append(f"{exc.filename}: cannot be read ({exc.strerror or exc})")
    if skipped is not None:
        skipped.extend((path, _broken_link(path)) for path in sorted(broken))
    return sorted(inside)


def _left_out_under(folder: Path) -> tuple[list[Path], list[Path]]:
    """What :func:`_images_under` leaves out of ``folder`` -> (image files in hidden files
    or folders, symbolic links to folders), each sorted; for the error of a folder where
    nothing else is found."""
    hidden, linked = [], []
    for top, folders, names in os.walk(folder):
        inside_hidden = any(part.startswith(".") for part in Path(top).relative_to(folder).parts)
        linked += [Path(top) / name for name in folders if (Path(top) / name).is_symlink()]
        hidden += [Path(top) / name for name in names if Path(name).suffix.lower() in IMAGE_SUFFIXES
                   and (inside_hidden or name.startswith(".")) and (Path(top) / name).is_file()]
    return sorted(hidden), sorted(linked)


@dataclass(frozen=True)
class Hit:
    """One ranked image: its path, its cosine similarity to the caption, and its rank
    (1 = best)."""

    path: Path
    score: float
    rank: int


class RunEncoder:
    """A trained encoder ready to encode images and captions (:func:`load_encoder`).

    ``encoder``: the :class:`~wsreid.api.EncoderComponent` in eval mode; ``device``: where
    it runs; ``batch_size``: rows encoded at once (the recipe's ``eval.batch_size``);
    ``target``: what it was loaded from (:class:`~wsreid.engine.offline_eval.EvalTarget`)."""

    def __init__(self, encoder, device: torch.device, batch_size: int, name: str, plugins, recipe, target=None):
        self.encoder, self.device, self.batch_size = encoder, device, batch_size
        self.name, self.target = name, target
        self._plugins, self._recipe = plugins, recipe

    def __repr__(self) -> str:
        return (f"RunEncoder({self.name}, embed_dim={self.encoder.embed_dim}, "
                f"image_size={tuple(self.encoder.image_size)}, device={self.device})")

    def _dist(self):
        from wsreid.distributed import Distributed

        dist = Distributed(None)
        dist.device = self.device
        return dist

    def encode_images(self, paths: Iterable[str | os.PathLike[str]]) -> torch.Tensor:
        """N x d float32 features of the image files ``paths`` (any size and format PIL
        reads; resized to the encoder's input as in evaluation), L2-normalised, on the CPU.
        A missing file is a :class:`~wsreid.errors.UserError` naming it, before any is
        encoded."""
        from wsreid.engine.components import encoder_calls
        from wsreid.engine.evaluate import extract_image_features

        files = _image_paths(paths)
        with encoder_calls(self._plugins, self._recipe, "encoding images"):
            return extract_image_features(self.encoder, files, self.batch_size, self._dist(), desc="images").cpu()

    def readable_images(self, paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[str]]:
        """The files of ``paths`` that decode as images, in order, and one line per file
        that does not (what is wrong with it: not an image, truncated, over PIL's pixel
        limit, ...). Each file is decoded and resized to the encoder's input here; the
        images are kept in the process's decoded-image cache, so :meth:`encode_images` of
        the readable files decodes none of them again (``WSREID_IMAGE_CACHE_MB`` bounds
        it). A missing file is a :class:`~wsreid.errors.UserError`, as in
        :meth:`encode_images`."""
        from wsreid.engine.data import ImageFiles

        images = ImageFiles(_image_paths(paths), self.encoder)  # as encode_images reads them
        readable, problems = [], []
        for i, path in enumerate(images.paths):
            try:
                images.decoded(i)
            except DataError as exc:
                problems.append(str(exc))
            else:
                readable.append(path)
        return readable, problems

    def encode_captions(self, captions: Iterable[str]) -> torch.Tensor:
        """N x d float32 features of ``captions`` (tokenised as in evaluation: truncated
        to the encoder's ``max_length``), L2-normalised, on the CPU."""
        from wsreid.engine.components import encoder_calls
        from wsreid.engine.evaluate import extract_text_features

        texts = _captions(captions)
        with encoder_calls(self._plugins, self._recipe, "encoding captions"):
            return extract_text_features(self.encoder, texts, self.batch_size, self._dist(), desc="captions").cpu()

    def caption_warnings(self, captions: Iterable[str]) -> list[str]:
        """One line per caption the encoder does not read whole: longer than the tokens
        it reads (``max_length``; the words past it are dropped), or with words its
        vocabulary does not know (each read as the one unknown token). Empty for an
        encoder that cannot count its tokens (``caption_token_counts``, as the CLIP
        encoder's). Training warns of the same for the training captions as a whole."""
        texts = _captions(captions)
        counts = getattr(self.encoder, "caption_token_counts", None)
        if counts is None:
            return []
        limit = int(self.encoder.max_length)
        lines = []
        for i, (text, (tokens, words, unknown)) in enumerate(zip(texts, counts(texts)), 1):
            short = text if len(text) <= 40 else text[:37] + "..."
            if tokens > limit:
                cut = "its last token is not read" if tokens - limit == 1 else f"its last {tokens - limit} are not read"
                lines.append(f"description {i} ({short!r}) is {tokens} tokens long with its start and end; the "
                             f"encoder reads {limit}, so {cut} (put what matters first, or shorten it)")
            if unknown:
                verb = "is" if unknown == 1 else "are"
                lines.append(f"description {i} ({short!r}): {unknown} of its {words} word {plural(words, 'token')} "
                             f"{verb} unknown to the encoder's vocabulary, each read as the same unknown token (use "
                             "the words of the training captions)")
        return lines

    def search(self, captions: Iterable[str], paths: Iterable[str | os.PathLike[str]],
               top_k: int = 5) -> list[list[Hit]]:
        """For each caption, the ``top_k`` images of ``paths`` most similar to it, best
        first (ties in the order of ``paths``)."""
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise UserError(f"top_k={top_k!r}: needs a whole number >= 1", hint="e.g. top_k=5")
        files = _image_paths(paths)
        queries = self.encode_captions(captions)
        gallery = self.encode_images(files)
        similarity = queries @ gallery.T                                  # Q x G
        k = min(top_k, len(files))
        # a stable sort keeps equal scores in gallery order (topk does not promise it)
        order = torch.sort(similarity, dim=1, descending=True, stable=True).indices[:, :k]
        return [[Hit(files[int(j)], float(similarity[q, j]), rank) for rank, j in enumerate(row, 1)]
                for q, row in enumerate(order)]


def plural(n: int, noun: str) -> str:
    """``noun`` as it goes with the count ``n``: ``token``, ``tokens`` (also the search
    command's counts)."""
    return noun if n == 1 else f"{noun}s"


def _image_paths(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise TypeError(f"pass a list of image paths, got the single path {paths!r}: write [{paths!r}]")
    files = [Path(p) for p in paths]
    if not files:
        raise UserError("no image paths given", hint="pass a list of image files")
    missing = [p for p in files if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UserError(f"image {missing[0]} is not a file{more}", hint="pass paths of existing image files")
    return files


def _captions(captions: Iterable[str]) -> list[str]:
    if isinstance(captions, str):
        raise TypeError(f"pass a list of captions, got the single string {captions!r}: write [{captions!r}]")
    texts = list(captions)
    if not texts:
        raise UserError("no captions given", hint="pass a list of captions")
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"caption {i} ({text!r}) is not a non-empty string", hint="pass a list of descriptions")
    return texts


@callers_random_state_kept()
def load_encoder(target: str | os.PathLike[str], *, recipe: str | os.PathLike[str] | None = None,
                 zero_shot: bool = False, overrides: Sequence[str] = (), disabled: Sequence[str] = (),
                 plugins=None) -> RunEncoder:
    """The encoder of ``target`` - a run directory, a checkpoint directory or
    ``.safetensors`` file, or a recipe with ``zero_shot`` (the encoder as the recipe loads
    it) - as ``wsreid eval`` resolves it (:func:`~wsreid.engine.offline_eval.resolve_target`),
    built by the run's recipe (``recipe`` for a checkpoint outside a run; ``overrides``,
    ``disabled`` and ``plugins`` - the plugin set of a run whose components were
    registered in code, :func:`~wsreid.pluginmanager.load_plugins` - as for
    :func:`~wsreid.recipe.load_recipe`)."""
    from wsreid.engine.offline_eval import load_target_recipe, resolve_target, target_encoder

    resolved = resolve_target(target, recipe, zero_shot)
    loaded = load_target_recipe(resolved, overrides, disabled, plugins=plugins)
    _, encoder, device = target_encoder(loaded, resolved, with_dataset=False)
    name = str(resolved.weights or resolved.recipe)
    return RunEncoder(encoder, device, loaded.recipe.eval.batch_size, name, loaded.plugins, loaded.recipe, resolved)
