"""A naive, line-by-line port of the authors' EdgeViT, written from the reference description.

Written for comparison only (latency baseline and an independent numerical check): the module
tree and parameter names follow the authors' state dicts (``patch_embed{i}``, ``blocks{i}.{j}.
LocalAgg`` / ``.SelfAttn``, ``norm``, ``head``), and the computation follows their code's
structure: tokens as (B, N, C) sequences, unfused attention with an explicit softmax, the
sampler written as ``AvgPool2d(kernel 1, stride r)``, transposes back and forth around every
convolution. It asserts the fixed input size the authors' code assumes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, in_ch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_ch, dim, patch, stride=patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        B, C, H, W = x.shape
        x = self.norm(x.flatten(2).transpose(1, 2))
        return x.reshape(B, H, W, C).permute(0, 3, 1, 2).contiguous()


class CMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LocalAgg(nn.Module):
    def __init__(self, dim: int, mlp_ratio: float) -> None:
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm2d(dim)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = CMlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x + self.conv2(self.attn(self.conv1(self.norm1(x))))
        x = x + self.mlp(self.norm2(x))
        return x


class GlobalSparseAttn(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, sr: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.sr = sr
        if sr > 1:
            self.sampler = nn.AvgPool2d(1, sr)
            self.LocalProp = nn.ConvTranspose2d(dim, dim, sr, stride=sr, groups=dim)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        B, N, C = x.shape  # noqa: RUF059 - as the authors unpack it
        if self.sr > 1:
            x = x.transpose(1, 2).reshape(B, C, H, W)
            x = self.sampler(x)
            x = x.flatten(2).transpose(1, 2)
        qkv = self.qkv(x).reshape(B, -1, 3, self.num_heads, C // self.num_heads)
        qkv = qkv.permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, -1, C)
        if self.sr > 1:
            x = x.permute(0, 2, 1).reshape(B, C, H // self.sr, W // self.sr)
            x = self.LocalProp(x)
            x = x.reshape(B, C, -1).permute(0, 2, 1)
            x = self.norm(x)
        return self.proj(x)


class SelfAttn(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, sr: int) -> None:
        super().__init__()
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = GlobalSparseAttn(dim, num_heads, qkv_bias, sr)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        B, N, H, W = x.shape
        x = x.flatten(2).transpose(1, 2)
        x = x + self.attn(self.norm1(x), H, W)
        x = x + self.mlp(self.norm2(x))
        return x.transpose(1, 2).reshape(B, N, H, W)


class LGLBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, sr: int) -> None:
        super().__init__()
        self.LocalAgg = LocalAgg(dim, mlp_ratio) if sr > 1 else nn.Identity()
        self.SelfAttn = SelfAttn(dim, num_heads, mlp_ratio, qkv_bias, sr)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.SelfAttn(self.LocalAgg(x))


class EdgeVit(nn.Module):
    def __init__(
        self,
        depth: Sequence[int] = (1, 2, 5, 3),
        img_size: int = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: Sequence[int] = (48, 96, 240, 384),
        head_dim: int = 64,
        mlp_ratio: float | Sequence[float] = 4.0,
        qkv_bias: bool = True,
        sr_ratios: Sequence[int] = (4, 2, 2, 1),
    ) -> None:
        super().__init__()
        self.img_size = img_size
        ratios = list(mlp_ratio) if isinstance(mlp_ratio, Sequence) else [mlp_ratio] * 4
        heads = [d // head_dim for d in embed_dim]
        self.patch_embed1 = PatchEmbed(4, in_chans, embed_dim[0])
        self.patch_embed2 = PatchEmbed(2, embed_dim[0], embed_dim[1])
        self.patch_embed3 = PatchEmbed(2, embed_dim[1], embed_dim[2])
        self.patch_embed4 = PatchEmbed(2, embed_dim[2], embed_dim[3])
        for i in range(4):
            setattr(self, f"blocks{i + 1}", nn.ModuleList([
                LGLBlock(embed_dim[i], heads[i], ratios[i], qkv_bias, sr_ratios[i])
                for _ in range(depth[i])
            ]))
        self.norm = nn.BatchNorm2d(embed_dim[-1])
        self.head = nn.Linear(embed_dim[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-1] == self.img_size and x.shape[-2] == self.img_size
        for i in range(1, 5):
            x = getattr(self, f"patch_embed{i}")(x)
            for blk in getattr(self, f"blocks{i}"):
                x = blk(x)
        x = self.norm(x)
        x = x.flatten(2).mean(-1)
        return self.head(x)


PRESETS = {
    "edgevit_xxs": {"depth": (1, 1, 3, 2), "embed_dim": (36, 72, 144, 288), "head_dim": 36},
    "edgevit_xs": {"depth": (1, 1, 3, 1), "embed_dim": (48, 96, 240, 384), "head_dim": 48},
    "edgevit_s": {"depth": (1, 2, 5, 3), "embed_dim": (48, 96, 240, 384), "head_dim": 48},
}


def naive_edgevit(name: str, **kwargs) -> EdgeVit:
    return EdgeVit(**{**PRESETS[name], **kwargs})


# -- timing: ours against the port, interleaved ---------------------------------------------
USAGE = """Time our EdgeViT presets against this port, interleaved, as ratios ours / port:

    uv run python benchmarks/official_port.py [--threads 1,2] [--rounds 5] [--reps 20] [--onnx]
        [--clock wall|cpu]

Each round times every (preset, model) pair once for ``--reps`` calls in alternation, so load
from other processes hits both alike; the ratio of medians is reported per round and overall.
Both models get the same weights (ours converted from the port's state dict), batch 1, 224².
Ours is timed as the latency backends time it, in its deployable form (fuse_for_inference,
docs/architectures.md, "Deployable form"; ONNX Runtime gets that form's export); the port as
the authors' code runs it.
"""


def _pairs(names: Sequence[str]) -> dict[str, tuple[nn.Module, nn.Module]]:
    from edgeexplore.models import from_official, fuse_for_inference

    out = {}
    for n in names:
        torch.manual_seed(0)
        port = naive_edgevit(n).eval()
        ours = from_official(port.state_dict(), head_dim=PRESETS[n]["head_dim"])
        out[n] = (fuse_for_inference(ours), port)
    return out


def _onnx_runner(model: nn.Module, x: torch.Tensor, threads: int):
    """The onnxruntime backend's own runner: the same export and session settings it times."""
    from edgeexplore.latency import get_backend

    return get_backend("onnxruntime", threads=threads).prepare(model, x)


def _ratio_rounds(ours, port, rounds: int, reps: int, clock) -> list[float]:
    import statistics

    for _ in range(3):
        ours(), port()
    ratios = []
    for _ in range(rounds):
        a, b = [], []
        for _ in range(reps):
            for fn, acc in ((ours, a), (port, b)):
                t0 = clock()
                fn()
                acc.append(clock() - t0)
        ratios.append(statistics.median(a) / statistics.median(b))
    return ratios


def main(argv: list[str] | None = None) -> None:
    import argparse
    import statistics

    ap = argparse.ArgumentParser(description=USAGE, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--onnx", action="store_true", help="also time both in ONNX Runtime")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: the calling thread's CPU time, steadier on a loaded machine "
                         "(meaningful with one thread only; other threads are not counted)")
    args = ap.parse_args(argv)
    import time

    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    pairs = _pairs(args.presets.split(","))
    x = torch.randn(1, 3, 224, 224)
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for name, (ours, port) in pairs.items():
            with torch.inference_mode():
                torch.testing.assert_close(ours(x), port(x), atol=1e-4, rtol=1e-4)
                eager = _ratio_rounds(lambda o=ours: o(x), lambda p=port: p(x),
                                      args.rounds, args.reps, clock)
            line = (f"{name:12s} {threads} thread(s)  eager ours/port: median "
                    f"{statistics.median(eager):.3f} (rounds {', '.join(f'{r:.2f}' for r in eager)})")
            if args.onnx:
                onnx = _ratio_rounds(_onnx_runner(ours, x, threads), _onnx_runner(port, x, threads),
                                     args.rounds, args.reps, clock)
                line += (f"; onnxruntime: median {statistics.median(onnx):.3f} "
                         f"(rounds {', '.join(f'{r:.2f}' for r in onnx)})")
            print(line, flush=True)


if __name__ == "__main__":
    main()
