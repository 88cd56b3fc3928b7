"""Charts and figures the console draws: labels escaped, no inline style, numbers right."""

from __future__ import annotations

from node.console.charts import GraphNode, bar_chart, federation_graph, line_chart
from node.console.summaries import balances, filter_rows, pool_use


def test_chart_labels_are_escaped_and_carry_no_inline_style() -> None:
    """A label holding markup is shown as text; charts use classes, never style attributes."""
    charts = [
        bar_chart("t", [("<script>x</script>", 2.0), ("b", 1.0)]),
        line_chart("u", [(0, 1), (10, 2)], 4, "units"),
        federation_graph("<a>", [GraphNode("<b>", "ok"), GraphNode("c", "failing")]),
    ]
    for svg in charts:
        assert "<script>" not in svg
        assert "style=" not in svg
        assert 'role="img"' in svg
    assert "&lt;script&gt;" in charts[0]
    assert "link-failing" in charts[2]


def test_a_line_chart_without_samples_says_so() -> None:
    """No samples yet: the chart says it instead of drawing a line."""
    assert "no samples yet" in line_chart("u", [], 1, "units")


def test_pool_use_counts_a_shared_capacity_once() -> None:
    """Two flavors of one pool and region share its slots: used = total − free, counted once."""
    pools = {
        "pools": [{"name": "cpu", "kind": "compute", "state": "online"}, {"name": "net", "kind": "network"}],
        "offers": [
            {
                "pool": "cpu",
                "region_id": "r",
                "total": 4,
                "capacity_cost": 1,
                "capacity_free": 1,
                "capacity_unit": "slots",
            },
            {
                "pool": "cpu",
                "region_id": "r",
                "total": 2,
                "capacity_cost": 2,
                "capacity_free": 1,
                "capacity_unit": "slots",
            },
        ],
    }
    [use] = pool_use(pools)
    assert (use.name, use.used, use.total, use.unit, use.percent) == ("cpu", 3, 4, "slots", 75)


def test_balances_and_filters() -> None:
    """Balance is posted credits minus posted debits; filters keep rows matching every given field."""
    [row] = balances([{"credits_posted": 10, "debits_posted": 3, "debits_pending": 2, "credits_pending": 0}])
    assert (row["balance"], row["held"]) == (7, 2)
    rows = [{"state": "accepted", "consumer": "a"}, {"state": "settled", "consumer": "a"}]
    assert filter_rows(rows, state="settled", consumer="") == [rows[1]]


def test_filters_show_a_dash_for_what_an_answer_lacks() -> None:
    """Money, times, durations and sizes the API left out (None or missing) render as "-", never an error."""
    from node.console.render import make_environment

    env = make_environment()
    page = env.from_string(
        "{{ x.amount | money(x.currency) }} {{ x.t | utc }} {{ x.s | duration }} {{ x.b | bytes }} {{ x.state | badge }}"
    )
    shown = page.render(x={})
    assert shown.count("-") >= 5
    assert "1,200.00 CNY" in env.from_string("{{ 120000 | money('CNY') }}").render()
