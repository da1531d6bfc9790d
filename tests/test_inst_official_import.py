"""Official InST embeddings.pt: imported through the restricted unpickler, anything else refused.

The checkpoint is built here with the official structure (ldm's CrossAttention and Attentions,
written from the published equations) and pickled exactly as the official `EmbeddingManager.save`
does: the whole module object.
"""

import os
import sys
import types

import pytest
import torch
from torch import nn


class OfficialCrossAttention(nn.Module):
    def __init__(self, query_dim, context_dim=None, heads=8, dim_head=64, dropout=0.0):
        super().__init__()
        inner = dim_head * heads
        context_dim = context_dim or query_dim
        self.scale = dim_head ** -0.5
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(dropout))

    def forward(self, x, context=None):
        context = x if context is None else context
        h = self.heads
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        q, k, v = (t.reshape(t.shape[0], t.shape[1], h, -1).permute(0, 2, 1, 3).reshape(t.shape[0] * h, t.shape[1], -1)
                   for t in (q, k, v))
        attn = (torch.einsum("b i d, b j d -> b i j", q, k) * self.scale).softmax(dim=-1)
        out = torch.einsum("b i j, b j d -> b i d", attn, v)
        n, d = out.shape[1], out.shape[2]
        out = out.reshape(-1, h, n, d).permute(0, 2, 1, 3).reshape(-1, n, h * d)
        return self.to_out(out)


class OfficialAttentions(nn.Module):
    def __init__(self, dim, n_heads, d_head, dropout=0.0):
        super().__init__()
        self.attn1 = OfficialCrossAttention(dim, heads=n_heads, dim_head=d_head, dropout=dropout)
        self.attn2 = OfficialCrossAttention(dim, heads=n_heads, dim_head=d_head, dropout=dropout)
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, dim))

    def forward(self, x, context=None):
        return self.net(self.attn2(self.attn1(x), x))


# pickled under the names they have in the official repository
OFFICIAL_NAMES = {OfficialCrossAttention: ("ldm.modules.attention", "CrossAttention"),
                  OfficialAttentions: ("ldm.modules.embedding_manager", "Attentions")}
for _cls, (_module, _name) in OFFICIAL_NAMES.items():
    _cls.__module__, _cls.__qualname__ = _module, _name


@pytest.fixture
def official_modules(monkeypatch):
    """Make the official class names importable while pickling, as they are in the InST repo."""
    for name in ("ldm", "ldm.modules", "ldm.modules.attention", "ldm.modules.embedding_manager"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    for cls, (module, name) in OFFICIAL_NAMES.items():
        setattr(sys.modules[module], name, cls)


def _save_official(path):
    torch.manual_seed(0)
    attention = OfficialAttentions(dim=768, n_heads=8, d_head=64, dropout=0.05)
    torch.save({"string_to_token": {"*": torch.tensor(265)}, "attention": attention}, path)
    return attention


def test_official_checkpoint_imports_and_gives_the_official_token(pkg, tmp_path, official_modules, monkeypatch):
    from inst_styleforge.inst_core.official_import import import_official_style
    from inst_styleforge.inst_core.style import ImageFeatures

    path = tmp_path / "embeddings.pt"
    official = _save_official(path).eval()
    for name in ("ldm", "ldm.modules", "ldm.modules.attention", "ldm.modules.embedding_manager"):
        monkeypatch.delitem(sys.modules, name)  # the importer must not need the official code
    style = import_official_style(path)
    embed = torch.nn.functional.normalize(torch.randn(2, 768), dim=-1)
    with torch.no_grad():
        expected = official(embed.view(2, 1, 768), embed.view(2, 1, 768)).view(2, 1, 768)
    got = style.vectors(ImageFeatures(embed, torch.zeros(2, 257, 1024)))["l"]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert style.spec.attention_heads == 8 and style.spec.dim_head == 64 and style.spec.dropout == 0.05


class RunsAShellCommand:
    def __reduce__(self):
        return (os.system, (f"touch {RunsAShellCommand.marker}",))


def test_a_pickle_with_anything_else_is_refused_and_never_run(pkg, tmp_path):
    from inst_styleforge.inst_core.official_import import import_official_style
    from inst_styleforge.training_kit.errors import InputError

    RunsAShellCommand.marker = tmp_path / "pwned"
    path = tmp_path / "embeddings.pt"
    torch.save({"string_to_token": {"*": torch.tensor(265)}, "attention": RunsAShellCommand()}, path)
    with pytest.raises(InputError, match="'official_file'.*holds something besides") as refused:
        import_official_style(path)
    assert not RunsAShellCommand.marker.exists()
    assert "posix.system" in str(refused.value) or "os.system" in str(refused.value), str(refused.value)
    for unsafe_advice in ("weights_only", "can still be loaded", "trust the source"):
        assert unsafe_advice not in str(refused.value)


def test_a_plain_state_dict_is_refused_with_a_clear_message(pkg, tmp_path):
    from inst_styleforge.inst_core.official_import import import_official_style
    from inst_styleforge.training_kit.errors import InputError

    path = tmp_path / "embeddings.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    with pytest.raises(InputError, match="no InST 'attention' module"):
        import_official_style(path)


def test_a_text_file_or_an_attention_module_of_other_sizes_is_refused_before_anything_is_built(
        pkg, tmp_path, official_modules):
    """The unpickled module is untrusted: a text file named .pt, a head count no style has, and layers
    of another width are each refused on official_file."""
    from inst_styleforge.inst_core.official_import import import_official_style
    from inst_styleforge.training_kit.errors import InputError

    notes = tmp_path / "notes.pt"
    notes.write_text("not a checkpoint\n")
    with pytest.raises(InputError, match="^Input 'official_file': 'notes.pt' is not an official InST embeddings.pt"):
        import_official_style(notes)
    huge_heads = OfficialAttentions(dim=768, n_heads=8, d_head=64)
    huge_heads.attn1.heads = 10**9  # would make dim_head 0 and the encoder a billion heads wide
    narrow = OfficialAttentions(dim=640, n_heads=8, d_head=64)
    for name, attention, problem in (("huge.pt", huge_heads, "has an invalid spec"),
                                     ("narrow.pt", narrow, "has an attention module of another shape")):
        torch.save({"string_to_token": {"*": torch.tensor(265)}, "attention": attention}, tmp_path / name)
        with pytest.raises(InputError, match=f"^Input 'official_file': '{name}' {problem}"):
            import_official_style(tmp_path / name)
