"""Agent cards: the per-agent card (rewritten to the gateway, strict 1.0 for 1.0 clients,
combined for the others, filled when the agent's is invalid, from the operator's metadata),
its caching headers, the negative cache of card-less agents, the extended card, and the
gateway's own card."""

from __future__ import annotations

import json

import httpx
import pytest

from a2a.types import AgentCard, TaskState
from a2a.utils.proto_utils import validate_proto_required_fields
from google.protobuf.json_format import ParseDict

from card_server import CardServer
from conftest import EXTENDED_CARD_TOKEN
from e2e_util import (
    HTTP_TIMEOUT_SECONDS,
    assert_error_info,
    error_of,
    fetch_card,
    result_of,
    rpc,
    run,
    sdk_client,
    send_for_task,
    user_message,
)


def _same_url(a: str, b: str) -> bool:
    return a.rstrip('/') == b.rstrip('/')


@pytest.mark.parametrize(('agent_id', 'name'), [('tasks', 'Task Agent'), ('chat', 'Message Agent')])
def test_sdk_resolves_per_agent_card_pointing_at_the_gateway(e2e, agent_id, name):
    card = run(fetch_card(e2e.card_base(agent_id)))
    assert card.name == name
    assert card.capabilities.streaming is True
    # The gateway relays push for every agent; the SDK agents themselves have it off.
    assert card.capabilities.push_notifications is (not e2e.direct)
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


# --- card negotiation: strict 1.0 for 1.0 clients, combined for the others ---------------

V03_ONLY = ('url', 'preferredTransport', 'protocolVersion', 'additionalInterfaces',
            'supportsAuthenticatedExtendedCard')


def assert_strict_v10(card: dict) -> AgentCard:
    """The card parses as the SDK's 1.0 `AgentCard` with unknown fields rejected, and has every
    field the 1.0 schema marks REQUIRED."""
    for key in V03_ONLY:
        assert key not in card, (key, card)
    parsed = ParseDict(card, AgentCard())  # no ignore_unknown_fields: an unknown member fails
    validate_proto_required_fields(parsed)
    return parsed


def get_card(url: str, **headers: str) -> httpx.Response:
    r = httpx.get(url, headers=headers, timeout=HTTP_TIMEOUT_SECONDS)
    assert r.status_code == 200, (r.status_code, r.text)
    return r


@pytest.mark.gateway_only
@pytest.mark.parametrize('agent_id', ['tasks', 'chat'])
def test_v10_clients_get_a_strict_card(e2e, agent_id):
    url = e2e.card_url(agent_id)
    for headers in ({'A2A-Version': '1.0'}, {'Accept': 'application/a2a+json'}):
        r = get_card(url, **headers)
        parsed = assert_strict_v10(r.json())
        assert [(i.protocol_binding, i.protocol_version) for i in parsed.supported_interfaces][0] == (
            'JSONRPC', '1.0')
        assert all(_same_url(i.url, e2e.agent_url(agent_id)) for i in parsed.supported_interfaces)
    a2a_json = get_card(url, Accept='application/a2a+json')
    assert a2a_json.headers['content-type'].startswith('application/a2a+json'), a2a_json.headers
    by_query = get_card(f'{url}?A2A-Version=1.0')
    assert_strict_v10(by_query.json())


@pytest.mark.gateway_only
def test_others_get_the_combined_card_and_a_03_client_still_works(e2e):
    for headers in ({}, {'A2A-Version': '0.3'}):
        card = get_card(e2e.card_url('tasks'), **headers).json()
        assert _same_url(card['url'], e2e.agent_url('tasks'))
        assert card['preferredTransport'] == 'JSONRPC'
        assert card['protocolVersion'].startswith('0.3')
        assert 'supportedInterfaces' in card

    async def go():
        async with await sdk_client(e2e.card_base('tasks'), '0.3') as client:
            task = await send_for_task(client, user_message('hello through the combined card'))
            assert task.status.state == TaskState.TASK_STATE_COMPLETED, task

    run(go())


@pytest.mark.gateway_only
def test_cards_vary_on_what_they_are_built_from(e2e):
    url = e2e.card_url('tasks')
    combined = get_card(url)
    strict = get_card(url, **{'A2A-Version': '1.0'})
    for r in (combined, strict):
        vary = {v.strip().lower() for v in r.headers.get('vary', '').split(',')}
        assert {'a2a-version', 'accept', 'host'} <= vary, r.headers
        assert 'public' in r.headers['cache-control'], r.headers
    assert combined.headers['etag'] != strict.headers['etag'], 'one ETag for two different bodies'
    again = httpx.get(url, headers={'A2A-Version': '1.0', 'If-None-Match': strict.headers['etag']},
                      timeout=HTTP_TIMEOUT_SECONDS)
    assert again.status_code == 304
    other_host = get_card(url, Host='gw.example.test:8080').json()
    assert other_host['url'] == 'http://gw.example.test:8080/agents/tasks', other_host['url']


# --- cards the agent did not get right, cards from the operator, cards of down agents -----


def _upsert(e2e, agent: dict) -> dict:
    return result_of(rpc(e2e.rpc_url, 'agents/upsert', {'agent': agent}))


def _delete(e2e, agent_id: str) -> None:
    rpc(e2e.rpc_url, 'agents/delete', {'id': agent_id})


def _dead_url() -> str:
    """A loopback URL nothing listens on (the port was just free)."""
    import socket

    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return f'http://127.0.0.1:{s.getsockname()[1]}/'


@pytest.mark.gateway_only
def test_an_invalid_agent_card_is_served_filled(e2e):
    broken = {'description': '', 'version': 7, 'capabilities': [], 'skills': [{'id': 'x'}, 'junk'],
              'defaultInputModes': [], 'provider': {'organization': 'no url'}, 'x-custom': True}
    with CardServer(broken) as agent:
        try:
            _upsert(e2e, {'id': 'broken-card', 'url': agent.url})
            strict = get_card(e2e.card_url('broken-card'), **{'A2A-Version': '1.0'}).json()
            parsed = assert_strict_v10(strict)
            assert parsed.name == 'broken-card'
            assert parsed.version == '1.0.0'
            assert list(parsed.default_input_modes) == ['text/plain']
            assert [(s.id, list(s.tags)) for s in parsed.skills] == [('x', ['x'])]
            combined = get_card(e2e.card_url('broken-card')).json()
            assert combined['x-custom'] is True, 'the combined card keeps unknown members'
            assert 'provider' not in combined
        finally:
            _delete(e2e, 'broken-card')


@pytest.mark.gateway_only
def test_metadata_agent_card_is_served_while_the_agent_is_unreachable(e2e):
    dead = _dead_url()
    inline = {'name': 'Inline Agent', 'url': dead, 'skills': [{'id': 's', 'name': 'S', 'description': 'd'}]}
    try:
        _upsert(e2e, {'id': 'inline-card', 'url': dead, 'metadata': {'agentCard': inline}})
        card = get_card(e2e.card_url('inline-card')).json()
        assert card['name'] == 'Inline Agent'
        assert _same_url(card['url'], e2e.agent_url('inline-card'))
        assert dead.rstrip('/') not in json.dumps(card)
        assert_strict_v10(get_card(e2e.card_url('inline-card'), **{'A2A-Version': '1.0'}).json())
    finally:
        _delete(e2e, 'inline-card')


@pytest.mark.gateway_only
def test_a_card_url_overrides_the_default_location(e2e):
    with CardServer({'name': 'Elsewhere', 'version': '9'}) as cards:
        try:
            for n, metadata in enumerate([{'cardUrl': f'{cards.url}cards/one.json'},
                                          {'agentCard': {'url': f'{cards.url}cards/two.json'}}]):
                _upsert(e2e, {'id': f'card-url-{n}', 'url': _dead_url(), 'metadata': metadata})
                card = get_card(e2e.card_url(f'card-url-{n}')).json()
                assert (card['name'], card['version']) == ('Elsewhere', '9')
            assert cards.count('/cards/one.json') == 1 and cards.count('/cards/two.json') == 1
            assert cards.count('/.well-known/agent-card.json') == 0
        finally:
            for n in range(2):
                _delete(e2e, f'card-url-{n}')


@pytest.mark.gateway_only
def test_a_stored_card_is_served_while_the_agent_is_down(e2e, tmp_path):
    from conftest import _start_agent

    proc, port = _start_agent('down', 'task', tmp_path)
    try:
        _upsert(e2e, {'id': 'goes-down', 'url': f'http://127.0.0.1:{port}/'})
        before = get_card(e2e.card_url('goes-down')).json()
        proc.stop()
        refreshed = rpc(e2e.rpc_url, 'agents/refreshCard', {'id': 'goes-down'})
        error_of(refreshed, -32099)
        after = get_card(e2e.card_url('goes-down')).json()
        assert after == before
        assert _same_url(after['url'], e2e.agent_url('goes-down'))
    finally:
        proc.stop()
        _delete(e2e, 'goes-down')


@pytest.mark.gateway_only
def test_a_card_less_agent_costs_at_most_one_fetch_per_ttl(e2e):
    requests = 20
    with CardServer(None) as agent:
        try:
            up = _upsert(e2e, {'id': 'card-less', 'url': agent.url})
            assert up.get('cardError'), up
            fetched_before = agent.count('/.well-known/agent-card.json')
            for _ in range(requests):
                r = httpx.get(e2e.card_url('card-less'), timeout=HTTP_TIMEOUT_SECONDS)
                assert r.status_code == 502, (r.status_code, r.text)
                assert r.json()['error'] == 'agent card unavailable'
            fetched = agent.count('/.well-known/agent-card.json') - fetched_before
            assert fetched <= 1, f'{requests} card requests caused {fetched} fetches'
            # An explicit refresh always fetches; the card then is served at once.
            agent.body = {'name': 'Late Card'}
            result_of(rpc(e2e.rpc_url, 'agents/refreshCard', {'id': 'card-less'}))
            assert get_card(e2e.card_url('card-less')).json()['name'] == 'Late Card'
        finally:
            _delete(e2e, 'card-less')


# --- the extended card ---------------------------------------------------------------------


def _extended(e2e, agent_id: str, version: str = '1.0', token: str | None = None) -> dict:
    method = 'GetExtendedAgentCard' if version == '1.0' else 'agent/getAuthenticatedExtendedCard'
    headers = {'Authorization': f'Bearer {token}'} if token else {}
    return rpc(e2e.agent_url(agent_id), method, {}, version=version, headers=headers)


def test_extended_card_passes_through_with_the_callers_credentials(e2e):
    card = _extended(e2e, 'tasks', token=EXTENDED_CARD_TOKEN)['result']
    assert [s['id'] for s in card['skills']] == ['echo', 'vip'], card['skills']
    assert all(_same_url(i['url'], e2e.agent_url('tasks')) for i in card['supportedInterfaces'])
    anonymous = _extended(e2e, 'tasks')['result']
    assert [s['id'] for s in anonymous['skills']] == ['echo'], 'the credential was not the caller\'s'
    wrong = _extended(e2e, 'tasks', token='not-it')['result']
    assert [s['id'] for s in wrong['skills']] == ['echo']
    legacy = _extended(e2e, 'tasks', version='0.3', token=EXTENDED_CARD_TOKEN)['result']
    assert [s['id'] for s in legacy['skills']] == ['echo', 'vip']
    assert _same_url(legacy['url'], e2e.agent_url('tasks'))
    if not e2e.direct:
        assert_strict_v10(card)
        assert e2e.upstream_url('tasks').rstrip('/') not in json.dumps(card) + json.dumps(legacy)


def test_extended_card_not_offered(e2e):
    err = error_of(_extended(e2e, 'chat', token=EXTENDED_CARD_TOKEN), -32004)
    assert_error_info(err, 'UNSUPPORTED_OPERATION')
    error_of(_extended(e2e, 'chat', version='0.3'), -32004)


def test_cards_advertise_the_extended_card_truthfully(e2e):
    tasks = get_card(e2e.card_url('tasks')).json()
    assert tasks['capabilities'].get('extendedAgentCard') is True
    assert tasks['supportsAuthenticatedExtendedCard'] is True
    chat = get_card(e2e.card_url('chat')).json()
    assert not chat['capabilities'].get('extendedAgentCard')
    assert not chat.get('supportsAuthenticatedExtendedCard')
