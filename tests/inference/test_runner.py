"""The runner's step inputs: packed metadata with exact slots, incremental block tables, graph padding."""

import torch

from inference.runner import ModelRunner, graph_batch_sizes
from inference.scheduler import PENDING
from inference.weights import load_model


def test_prepare_packs_exact_metadata_and_updates_tables_incrementally(checkpoints):
    model = load_model(checkpoints["glm"])
    runner = ModelRunner(model, num_blocks=16, block_size=4)
    a_blocks, b_blocks = [5, 2], [9]
    a, b = list(range(10, 17)), [20, 21, 22]  # a: 7 tokens, 5 cached, 2 new; b: prefill of 3
    ids, pos, meta, rows = runner.prepare([(a, 5, 2, a_blocks, True), (b, 0, 3, b_blocks, False)])
    assert ids.tolist() == [15, 16, 20, 21, 22]
    assert pos.tolist() == [5, 6, 0, 1, 2]
    assert meta.slot_mapping.tolist() == [2 * 4 + 1, 2 * 4 + 2, 9 * 4, 9 * 4 + 1, 9 * 4 + 2]
    assert meta.cu_seqlens_q.tolist() == [0, 2, 5] and meta.seq_lens.tolist() == [7, 3]
    assert meta.block_tables.tolist() == [[5, 2], [9, 0]] and meta.max_seqlen_q == 3
    assert rows.tolist() == [1]
    # the same block list grown in place: only its new entry is written; a new list is written whole
    a.append(17)
    a_blocks.append(11)
    ids, pos, meta, rows = runner.prepare([([1] * 9, 8, 1, a_blocks, True), (b, 2, 1, [4], True)])
    assert meta.block_tables.tolist() == [[5, 2, 11], [4, 0, 0]]
    assert meta.slot_mapping.tolist() == [11 * 4, 4 * 4 + 2] and rows.tolist() == [0, 1]


def test_graph_batch_sizes_and_padding_rows(checkpoints):
    assert graph_batch_sizes(64) == [1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64]
    assert graph_batch_sizes(20) == [1, 2, 4, 8, 16, 20] and graph_batch_sizes(1) == [1]
    runner = ModelRunner(load_model(checkpoints["glm"]), num_blocks=16, block_size=4)
    T, rows, R, fed = runner._fill([([3, 4, 5], 2, 1, [7], True)], pad_to=4)
    assert (T, rows, R, fed) == (4, 4, 1, False)
    # padding rows: token 0 at position 0, written into the reserved block, attending to one token
    dummy = runner.dummy_block * 4
    assert runner.dummy_block == 16 and runner.caches[0].k.shape[0] == 17
    assert runner._h_slots[:4].tolist() == [7 * 4 + 2, dummy, dummy, dummy]
    assert runner._h_lens[:4].tolist() == [3, 1, 1, 1] and runner._h_tables[1:4, 0].tolist() == [16] * 3
    assert torch.equal(runner._h_ids[1:4], torch.zeros(3, dtype=torch.int64))


def test_feed_rows_take_the_last_sampled_ids_from_the_device(checkpoints):
    """A decode row whose token is still on the device (PENDING on the host) runs the sampled id kept by
    feed_tokens, with the same logits as when the id is passed from the host."""
    runner = ModelRunner(load_model(checkpoints["glm"]), num_blocks=16, block_size=4, max_num_seqs=4)
    runner.execute([([10, 11, 12, 13, 14], 0, 4, [5, 6], False), ([20, 21, 22], 0, 2, [9], False)])
    runner.feed_tokens(torch.tensor([40, 41, 42]))
    a, b = [10, 11, 12, 13, PENDING], [20, 21, 22]
    ids, pos, meta, rows = runner.prepare([(a, 4, 1, [5, 6], True), (b, 2, 1, [9], True)], feed_rows=[2, -1])
    assert ids.tolist() == [42, 22] and pos.tolist() == [4, 2]
    fed = runner.execute([(a, 4, 1, [5, 6], True), (b, 2, 1, [9], True)], feed_rows=[2, -1]).clone()
    a[4] = 42
    host = runner.execute([(a, 4, 1, [5, 6], True), (b, 2, 1, [9], True)])
    torch.testing.assert_close(fed, host, rtol=0, atol=0)
    runner.feed_tokens(torch.tensor([7]))  # the next step's ids replace them
    ids, *_ = runner.prepare([(a, 4, 1, [5, 6], True)], feed_rows=[0])
    assert ids.tolist() == [7]
