"""Chapter 5's figures: the reversal model, its attention maps, the masks and the explorer,
without a display."""

import matplotlib.pyplot as plt
import pytest
import torch

from transformer_workbook.figures.common import COLUMN_IN


@pytest.fixture
def agg():
    yield plt
    plt.close("all")


def test_reversal_batch_is_the_task():
    from transformer_workbook.figures.decoder import REVERSAL_LENGTH, reversal_batch, reversal_tokenizer

    tok = reversal_tokenizer()
    src, tgt = reversal_batch(5, torch.Generator().manual_seed(0))
    assert src.shape == (5, REVERSAL_LENGTH) and tgt.shape == (5, REVERSAL_LENGTH + 1)
    assert torch.equal(tgt[:, :-1], src.flip(1)) and (tgt[:, -1] == tok.eos_id).all()


def test_trained_model_reverses_and_looks_at_the_mirrored_letter():
    from transformer_workbook.figures.decoder import REVERSAL_EXAMPLES, reversal_attention, train_reversal

    n = torch.get_num_threads()
    model = train_reversal()
    assert torch.get_num_threads() == n
    assert not model.training
    assert train_reversal() is not model  # a fresh copy each call
    for word in REVERSAL_EXAMPLES[:3]:
        att = reversal_attention(word)
        assert att["output"] == word[::-1]
        L = len(word)
        assert att["cross"].shape[-2:] == (L + 1, L) and att["self"].shape[-2:] == (L + 1, L + 1)
        assert att["cross"].mean(0).argmax(-1)[:L].tolist() == list(range(L - 1, -1, -1))
    padded = reversal_attention(REVERSAL_EXAMPLES[0], padding=2)
    assert (padded["cross"][..., -2:] == 0).all() and padded["output"] == REVERSAL_EXAMPLES[0][::-1]
    assert not padded["cross_allowed"][:, -2:].any()


def test_draw_mask_and_decoder_position(agg):
    from transformer_workbook.figures.decoder import draw_decoder_position, draw_mask

    ax = draw_mask(torch.ones(3, 3, dtype=torch.bool).tril(), title="causal")
    assert ax.images[0].get_array().shape == (3, 3) and ax.get_title() == "causal"
    with pytest.raises(ValueError):
        draw_mask(torch.ones(2, 2, 2, dtype=torch.bool))
    axes = draw_decoder_position(2, padding=2)
    assert axes[0].figure.get_size_inches()[0] <= COLUMN_IN
    for bad in ({"position": 7}, {"position": 0, "example": 99}):
        with pytest.raises(ValueError):
            draw_decoder_position(**bad)


def test_cross_attention_explorer_widget(agg, monkeypatch):
    ipywidgets = pytest.importorskip("ipywidgets")
    from transformer_workbook.figures import decoder as ch5

    assert ch5.CROSS_ATTENTION_EXPLORER.figsize[0] <= COLUMN_IN
    monkeypatch.setattr(agg, "show", lambda *a, **k: agg.close("all"))
    box = ch5.cross_attention_explorer(position=1, padding=2)
    assert isinstance(box, ipywidgets.VBox)
