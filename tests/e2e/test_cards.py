"""Agent cards: the per-agent card (rewritten to the gateway), its caching headers, and the
gateway's own card."""

from __future__ import annotations

import httpx
import pytest

from e2e_util import HTTP_TIMEOUT_SECONDS, fetch_card, rpc, result_of, run


def _same_url(a: str, b: str) -> bool:
    return a.rstrip('/') == b.rstrip('/')


@pytest.mark.parametrize(('agent_id', 'name'), [('tasks', 'Task Agent'), ('chat', 'Message Agent')])
def test_sdk_resolves_per_agent_card_pointing_at_the_gateway(e2e, agent_id, name):
    card = run(fetch_card(e2e.card_base(agent_id)))
    assert card.name == name
    assert card.capabilities.streaming is True
    assert card.capabilities.push_notifications is False
    assert [s.id for s in card.skills] == ['echo']
    interfaces = {(i.protocol_binding, i.protocol_version) for i in card.supported_interfaces}
    assert {('JSONRPC', '1.0'), ('JSONRPC', '0.3')} <= interfaces, interfaces
    for i in card.supported_interfaces:
        assert _same_url(i.url, e2e.agent_url(agent_id)), (i.url, e2e.agent_url(agent_id))


def test_card_json_rewrites_every_url_and_keeps_fields(e2e):
    r = httpx.get(e2e.card_url('tasks'), timeout=HTTP_TIMEOUT_SECONDS)
    assert r.status_code == 200, r.text
    assert r.headers['content-type'].startswith('application/json')
    card = r.json()
    expected = e2e.agent_url('tasks')
    urls = [i['url'] for i in card['supportedInterfaces']]
    urls += [card['url']] if 'url' in card else []
    urls += [i['url'] for i in card.get('additionalInterfaces', [])]
    assert urls and all(_same_url(u, expected) for u in urls), (urls, expected)
    if not e2e.direct:
        upstream = e2e.upstream_url('tasks').rstrip('/')
        assert upstream not in r.text, 'the upstream address leaks through the card'
    assert card['name'] == 'Task Agent'
    assert card['version'] == '0.0.1'
    assert card['defaultInputModes'] == ['text/plain']
    assert card['skills'][0]['examples'] == ['hello', 'ask', 'slow', 'fail']


def test_card_caching_headers_and_304(e2e):
    url = e2e.card_url('tasks')
    r = httpx.get(url, timeout=HTTP_TIMEOUT_SECONDS)
    assert r.status_code == 200
    etag = r.headers.get('etag')
    assert etag, r.headers
    assert 'max-age' in r.headers.get('cache-control', ''), r.headers
    if not e2e.direct:
        assert r.headers.get('last-modified'), r.headers

    again = httpx.get(url, headers={'If-None-Match': etag}, timeout=HTTP_TIMEOUT_SECONDS)
    assert again.status_code == 304, (again.status_code, again.text)
    assert again.content == b''
    assert again.headers.get('etag') == etag

    other = httpx.get(url, headers={'If-None-Match': '"not-the-etag"'}, timeout=HTTP_TIMEOUT_SECONDS)
    assert other.status_code == 200
    assert other.json() == r.json()
    assert other.headers.get('etag') == etag


@pytest.mark.gateway_only
def test_gateway_card_lists_each_agent_as_a_skill(e2e):
    r = httpx.get(f'{e2e.gateway}/.well-known/agent-card.json', timeout=HTTP_TIMEOUT_SECONDS)
    assert r.status_code == 200, r.text
    card = r.json()
    assert card.get('name')
    skill_ids = [s['id'] for s in card['skills']]
    assert len(skill_ids) == len(set(skill_ids)), skill_ids
    listed = rpc(e2e.rpc_url, 'agents/list', {})
    agents = result_of(listed)
    agents = agents['agents'] if isinstance(agents, dict) else agents
    assert set(skill_ids) == {a['id'] for a in agents}
    assert {'tasks', 'chat'} <= set(skill_ids)
