"""Write reference Lightning checkpoints with Lightning's own code, the way each framework saves them.

pytorch_lightning 2.6.6 is installed but does not import beside torch 2.13 here: torchmetrics imports the broken
torchvision. Run as a script (a subprocess of the tests) it hides torchvision from the import system first, so
Lightning treats it as absent, then trains one step and lets Lightning's ModelCheckpoint callback
(`_CheckpointConnector.dump_checkpoint`) write the file, with the framework's LightningModule layout:

- asparagus (Sllambias/asparagus @ 338450b, modules/lightning_modules/base_module.py + self_supervised.py;
  pipeline/run/pretrain.py): network at `self.model` (gardening-tools 0.3.5 `ResidualEncoderUNet` as
  resenc_unet_b builds it, or `UNet` as unet_b), save_hyperparameters(ignore=[model, weights, transforms]),
  ModelCheckpoint(dirpath=RUN/checkpoints, filename="last", save_top_k=1, every_n_epochs, enable_version_counter=
  False), hydra's composed config in RUN/hydra/config.yaml;
- fomo25_baseline (fomo25/baseline-codebase @ d2df6d4, models/self_supervised.py): save_hyperparameters() with
  model_name / patch_size / config, network at `self.model` (torch.compile'd with --compile: `model._orig_mod.`);
- fomo2jomo (jbanusco/fomo25 @ de35782): the same module around MultiModalUNetVAE (its encoder and latent heads).

    python tests/lightning_checkpoints.py '[{"kind": KIND, "out": DIR, "settings": {"features": [...], ...}}, ...]'
writes every job in one process (Lightning imports once) and prints one checkpoint path per line.
A compiled module (`compile`: the baseline's --compile) is wrapped by torch.compile, which is what puts
`_orig_mod.` into its keys; dynamo is disabled so the training step runs the module eagerly (no trace to build).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path

HIDDEN = ("torchvision",)


def hide_torchvision() -> None:
    version, distribution, find_spec = (importlib.metadata.version, importlib.metadata.distribution,
                                        importlib.util.find_spec)

    def hidden_version(name):
        if name in HIDDEN:
            raise importlib.metadata.PackageNotFoundError(name)
        return version(name)

    def hidden_distribution(name):
        if name in HIDDEN:
            raise importlib.metadata.PackageNotFoundError(name)
        return distribution(name)

    def hidden_find_spec(name, package=None):
        return None if name.split(".")[0] in HIDDEN else find_spec(name, package)

    importlib.metadata.version, importlib.metadata.distribution = hidden_version, hidden_distribution
    importlib.util.find_spec = hidden_find_spec
    sys.modules["torchvision"] = None


def reference_network(kind: str, settings: dict):
    """The framework's own network (gardening-tools classes, or the baseline's transcribed source)."""
    import torch
    from torch import nn

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    channels, features = int(settings.get("channels", 1)), settings["features"]
    if kind == "asparagus_resenc":
        from gardening_tools.modules.networks.resunet import ResidualEncoderUNet

        # asparagus resenc_unet_b's arguments, features/blocks from the settings (tiny for CPU tests)
        return ResidualEncoderUNet(dimensions="3D", input_channels=channels, output_channels=1,
                                   features_per_stage=tuple(features), stride=2, kernel_size=3,
                                   n_blocks_per_stage=tuple(settings["blocks"]),
                                   n_conv_per_stage_decoder=(1,) * (len(features) - 1), deep_supervision=False,
                                   use_skip_connections=False)
    if kind == "asparagus_unet":
        from gardening_tools.modules.networks.unet import UNet

        return UNet(input_channels=channels, output_channels=1, dimensions="3D", starting_filters=features[0])
    from tests.fomo25_baseline_reference import BaselineUNet, UNetEncoder

    if kind == "fomo25_baseline":
        return BaselineUNet(channels, features[0], head_outputs=channels)

    class MultiModalUNetVAEEncoderPart(nn.Module):
        """MultiModalUNetVAE (mmunetvae.py @ de35782): the encoder and the four latent 1x1 convs over every stage
        pooled to the bottleneck (its decoders hold no encoder weight and are left out)."""

        def __init__(self, starting_filters: int):
            super().__init__()
            self.encoder = UNetEncoder(1, starting_filters)
            bottleneck_channels = sum(starting_filters * 2 ** i for i in range(5))
            shared = starting_filters * 16 // 2
            self.conv_mu_shared = nn.Conv3d(bottleneck_channels, shared, kernel_size=1)
            self.conv_logvar_shared = nn.Conv3d(bottleneck_channels, shared, kernel_size=1)
            self.conv_mu_modality = nn.Conv3d(bottleneck_channels, starting_filters * 16 - shared, kernel_size=1)
            self.conv_logvar_modality = nn.Conv3d(bottleneck_channels, starting_filters * 16 - shared, kernel_size=1)

        def forward(self, x):
            skips = self.encoder(x)
            pooled = torch.cat([nn.functional.adaptive_avg_pool3d(f, skips[-1].shape[2:]) for f in skips], dim=1)
            return self.conv_mu_shared(pooled).mean() + self.conv_mu_modality(pooled).mean()

    return MultiModalUNetVAEEncoderPart(features[0])


def write(kind: str, out_dir: Path, settings: dict) -> Path:
    hide_torchvision()
    import pytorch_lightning as pl
    import torch
    import torch._dynamo
    from pytorch_lightning.callbacks import ModelCheckpoint

    torch._dynamo.config.disable = True

    torch.manual_seed(int(settings.get("seed", 0)))
    network = reference_network(kind, settings)
    edge = int(settings.get("edge", 32))
    channels = 1 if kind == "fomo2jomo" else int(settings.get("channels", 1))
    data = torch.utils.data.DataLoader(torch.randn(2, channels, edge, edge, edge), batch_size=1)

    class AsparagusSelfSupervised(pl.LightningModule):
        def __init__(self, model, learning_rate: float = 1e-4, warmup_epochs: int = 10, cosine_period_ratio: float = 1,
                     compile_mode: str | None = None, rec_loss_masked_only: bool = False, optimizer: str = "AdamW",
                     weight_decay: float = 3e-5, nesterov: bool = True, momentum: float = 0.99, weights=None):
            super().__init__()
            self.save_hyperparameters(ignore=["model", "weights", "train_transforms", "val_transforms",
                                              "test_transforms"])
            self.model = model

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.mse_loss(self.model(batch), batch)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=self.hparams.learning_rate)

    class BaselineSelfSupervised(pl.LightningModule):
        def __init__(self, model_name: str, steps_per_epoch: int, epochs: int, learning_rate: float, config: dict,
                     optimizer: str = "AdamW", input_channels: int = 1, patch_size=None, mask_patch_size: int = 4,
                     mask_ratio: float = 0.6, should_compile: bool = False, compile_mode: str | None = None):
            super().__init__()
            self.save_hyperparameters()
            self.model = torch.compile(network, backend="eager") if should_compile else network

        def training_step(self, batch, batch_idx):
            return self.model(batch).float().pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=self.hparams.learning_rate)

    patch = [edge] * 3
    if kind.startswith("asparagus"):
        run = out_dir / "run"
        module = AsparagusSelfSupervised(network)
        dirpath, filename = run / "checkpoints", "last"
        config = {"task": "PT900_FOMO300K", "root": "datapaper", "stem": "pretrain",
                  "model": {"net": "${model.pretrain_net}", "dimensions": "3D", "use_skip_connections": False,
                            "pretrain_net": settings.get("pretrain_net", "resenc_unet_b"),
                            "seg_net": "resenc_unet_b", "pretrain_optim": "AdamW", "pretrain_lr": 1e-4},
                  "training": {"batch_size": 8, "patch_size": patch, "mask_ratio": 0.6, "seed": 1},
                  "transforms": {"masking": True, "normalize": True},
                  "lightning": {"lightning_module": "SelfSupervisedModule", "data_module": "PretrainDataModule"}}
        (run / "hydra").mkdir(parents=True, exist_ok=True)
        import yaml

        (run / "hydra" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    else:
        name = "mmunetvae" if kind == "fomo2jomo" else settings.get("model_name", "unet_b_lw_dec")
        module = BaselineSelfSupervised(name, steps_per_epoch=1, epochs=1, learning_rate=1e-4,
                                        config={"model_name": name, "patch_size": tuple(patch), "batch_size": 1,
                                                "version_dir": str(out_dir / "version_0")},
                                        input_channels=channels, patch_size=tuple(patch),
                                        should_compile=bool(settings.get("compile", False)))
        dirpath, filename = out_dir / "checkpoints", "last"
    callback = ModelCheckpoint(dirpath=dirpath, filename=filename, save_top_k=1, every_n_epochs=1,
                               enable_version_counter=False)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=1, accelerator="cpu", devices=1, logger=False,
                         callbacks=[callback], enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, default_root_dir=str(out_dir))
    trainer.fit(module, train_dataloaders=data)
    return Path(callback.last_model_path or callback.best_model_path or dirpath / f"{filename}.ckpt")


if __name__ == "__main__":
    for job in json.loads(sys.argv[1]):
        print(write(job["kind"], Path(job["out"]), job.get("settings", {})), flush=True)
