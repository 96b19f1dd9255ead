"""Simulated raters on ranking tasks (the ranking mode of `rlhf simulate`).

Where the project's task mix serves a ranking, the simulated rater reads the ranking workbench
as a person does (app/workbench_html.py: the prompt and the K responses lettered in this
rater's display order), scores each response with the oracle, and orders them with
`decide_ranking` (app/simulate.py: the oracle's order, equal scores tied, two neighbouring
levels swapped with probability `noise`). The order is posted in the workbench's notation
(`format_order`: "C=A D") to the same route and with the same CSRF token a browser uses, so
leases, overlap and the stored display order are exercised as for people.
"""

from __future__ import annotations

import random

import httpx

from app.oracles import Oracle
from app.services.rating.ranking_judgments import format_order
from app.simulate import RaterStats, SimulationConfig, SimulationError, _request, decide_ranking
from app.workbench_html import Workbench, parse_workbench


async def rank(
    client: httpx.AsyncClient,
    url: str,
    page: Workbench,
    headers: dict[str, str],
    config: SimulationConfig,
    oracle: Oracle,
    rng: random.Random,
    stats: RaterStats,
) -> httpx.Response:
    """Order the ranking on `page` and post it; a ranking that filled meanwhile counts as refused."""
    if page.assignment_id is None or len(page.responses) < 2:
        raise SimulationError(
            f"unexpected ranking page from {url}: {page.error or page.notice or 'no responses'}"
        )
    try:
        scores = [float(oracle(page.prompt, text)) for _, text in page.responses]
    except Exception as error:
        raise SimulationError(f"the oracle failed: {error.__class__.__name__}: {error}") from error
    decision = decide_ranking(scores, rng=rng, noise=config.noise)
    data: dict[str, object] = {
        "assignment_id": page.assignment_id,
        "order": format_order(decision.ranks, decision.cutoff_rank),
    }
    response = await _request(client, "POST", f"{url}/rankings", data=data, headers=headers)
    if response.status_code == 200:
        stats.rankings += 1
        stats.swaps += decision.swaps
    elif response.status_code == 409:  # the lease ran out and the ranking filled meanwhile
        stats.refused += 1
    else:
        answer = parse_workbench(response.text)
        reason = answer.error or answer.notice or f"HTTP {response.status_code}"
        raise SimulationError(f"the ranking on assignment {page.assignment_id} was refused: {reason}")
    return response
