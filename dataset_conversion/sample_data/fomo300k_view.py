"""The sample corpus once more in FOMO300K's layout, for `fomo_nn_convert fomo300k` (FOMO26's corpus).

Same scans as `fomo60k/` (hard links where the file system allows, else copies), arranged as the
organisers ship FOMO300K (asparagus_preprocessing @ fce45b3, PT902_FOMO300K_HF.py and utils/bids):
one source folder per simulated site `PT9nn_Synth<site>`, `sub-XXXX/ses-YY/<modality>/
sub-XXXX_ses-YY_<suffix>.nii.gz` with BIDS suffixes (T1w, T2w, FLAIR, dwi_bval1000, adc, swi, T2starw,
PDw; repeats as `run-2_`, unknown sequences `undefined/..._scan`), every `ZIP_EVERY`-th session
shipped as `ses-YY.zip`, and the three metadata tables at the root with the organisers' columns:
participants.tsv (age and sex per session), mri_info.tsv (vendor and field strength per scan, from the
site), mapping.tsv (the FOMO60K-style name each file had). Zip members are stored, so the zip holds the
same bytes as the files.
"""
from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

from dataset_conversion.sample_data.output import write_file
from dataset_conversion.sample_data.sites import Site

ZIP_EVERY = 4
VENDORS = ("SIEMENS", "GE MEDICAL SYSTEMS", "Philips Medical Systems")
SUFFIXES = {"t1": ("anat", "T1w"), "t2": ("anat", "T2w"), "flair": ("anat", "FLAIR"),
            "dwi_b1000": ("dwi", "dwi_bval1000"), "adc": ("dwi", "adc"), "swi": ("anat", "swi"),
            "t2s": ("anat", "T2starw"), "pd": ("anat", "PDw")}


def source_folder(site: Site) -> str:
    number = int(site.site_id.rsplit("_", 1)[1])
    return f"PT9{number:02d}_Synth{site.site_id.replace('_', '').capitalize()}"


def bids_name(stem: str, sequence: str) -> tuple[str, str]:
    """(modality folder, suffix) of a FOMO60K file stem: `t1` -> (anat, T1w), `t1_2` -> (anat, run-2_T1w),
    `scan_3` -> (undefined, scan)."""
    if stem.startswith("scan"):
        return "undefined", "scan"
    modality, suffix = SUFFIXES[sequence]
    repeat = stem[len(sequence) + 1:] if stem != sequence else ""
    return modality, f"run-{repeat}_{suffix}" if repeat.isdigit() else suffix


def _place(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copyfile(source, destination)


def write_fomo300k_view(out_dir: str | Path, subject_records: list[dict], sites: dict[str, Site]) -> dict:
    """Write OUT/fomo300k from the corpus records; returns counts for sample_data.json."""
    out_dir = Path(out_dir)
    root = out_dir / "fomo300k"
    participants = [("dataset", "participant_id", "session_id", "age", "sex")]
    mri_info = [("dataset", "participant_id", "session_id", "filename", "Modality", "MagneticFieldStrength",
                 "Manufacturer")]
    mapping = [("dataset", "old_path", "new_path", "old_filename", "new_filename", "participant_id", "session_id",
                "modality")]
    counter = {"sessions": 0, "zipped": 0, "images": 0}
    numbers: dict[str, int] = {}
    for record in subject_records:
        for session_index, session in enumerate(record["sessions"]):
            site = sites[session["site"]]
            dataset = source_folder(site)
            numbers.setdefault((dataset, record["subject_id"]), len([k for k in numbers if k[0] == dataset]) + 1)
            subject = f"sub-{numbers[(dataset, record['subject_id'])]:04d}"
            ses = f"ses-{session_index + 1:02d}"
            members = {}
            for entry in session["files"]:
                stem = Path(entry["file"]).name[: -len(".nii.gz")]
                modality, suffix = bids_name(stem, entry["sequence"])
                name = f"{subject}_{ses}_{suffix}.nii.gz"
                members[f"{modality}/{name}"] = out_dir / entry["file"]
                relative = f"{subject}/{ses}/{modality}/{name}"
                vendor = VENDORS[int(site.site_id.rsplit("_", 1)[1]) % len(VENDORS)]
                mri_info.append((dataset, subject, ses, relative, "MR", f"{site.field_strength_t:g}", vendor))
                mapping.append((dataset, entry["file"], relative, Path(entry["file"]).name, name, subject, ses,
                                modality))
            participants.append((dataset, subject, ses, f"{session['age']:g}", record["sex"]))
            counter["sessions"] += 1
            counter["images"] += len(members)
            if counter["sessions"] % ZIP_EVERY == 0:
                archive = root / dataset / subject / f"{ses}.zip"
                archive.parent.mkdir(parents=True, exist_ok=True)
                with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as bundle:
                    for member, source in members.items():
                        bundle.write(source, f"{ses}/{member}")
                counter["zipped"] += 1
            else:
                for member, source in members.items():
                    _place(source, root / dataset / subject / ses / member)
    for name, rows in (("participants.tsv", participants), ("mri_info.tsv", mri_info), ("mapping.tsv", mapping)):
        write_file(root / name, "\n".join("\t".join(row) for row in rows) + "\n")
    counter["sources"] = len({row[0] for row in participants[1:]})
    return counter
