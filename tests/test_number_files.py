"""One strict reader for per-case number files: what used to be misread is refused, with the file named."""
from __future__ import annotations

import pytest

from fomo_nn.utils.errors import BadInputError
from fomo_nn.io.number_file import read_number_file


@pytest.mark.parametrize("content", [b"63 1", b"63\n70", b"6_3", b"nan", b"inf", b"", b"0x3f", b"63 years"])
def test_anything_but_one_plain_number_is_refused_naming_the_file(tmp_path, content):
    path = tmp_path / "label.txt"
    path.write_bytes(content)
    with pytest.raises(BadInputError, match="expected one number") as error:
        read_number_file(path)
    assert str(path) in str(error.value)


def test_utf16_is_named_not_a_codec_traceback(tmp_path):
    path = tmp_path / "label.txt"
    path.write_text("63", encoding="utf-16")
    with pytest.raises(BadInputError, match="UTF-16"):
        read_number_file(path)


@pytest.mark.parametrize("content, value", [(b"63\n", 63.0), (b" -1.5e1 ", -15.0), (b"\xef\xbb\xbf0.25", 0.25),
                                            (b".5", 0.5), (b"+2.", 2.0)])
def test_plain_numbers_are_read(tmp_path, content, value):
    path = tmp_path / "x.txt"
    path.write_bytes(content)
    assert read_number_file(path) == value


def test_plausible_range_is_enforced(tmp_path):
    path = tmp_path / "label.txt"
    path.write_text("1e300")
    with pytest.raises(BadInputError, match=r"age 1e\+300 is outside the plausible range \[0, 120\]"):
        read_number_file(path, (0.0, 120.0), what="age")
    path.write_text("-5")
    with pytest.raises(BadInputError, match="outside the plausible range"):
        read_number_file(path, (0.0, 120.0))
    path.write_text("64.5")
    assert read_number_file(path, (0.0, 120.0)) == 64.5


def test_fomo_task3_conversion_refuses_an_implausible_age_and_converts_the_rest(tmp_path, monkeypatch):
    from dataset_conversion.sample_data.generate import generate_sample_data
    from fomo_nn.cli.convert import main as convert

    generate_sample_data(tmp_path / "sample", seed=0, size="tiny", num_workers=1, progress=False)
    labels = sorted((tmp_path / "sample" / "finetune" / "task3" / "labels").glob("*/*/label.txt"))
    labels[0].write_text("1e300")
    monkeypatch.setenv("fomo_nn_raw", str(tmp_path / "raw"))
    code = convert(["fomo-task", str(tmp_path / "sample" / "finetune" / "task3"), "--task", "3", "-d", "13",
                    "--name", "Age"])
    assert code != 0
    converted = list((tmp_path / "raw" / "Dataset013_Age" / "labelsTr").glob("*.txt"))
    assert len(converted) == len(labels) - 1
