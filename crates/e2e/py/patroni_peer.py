#!/usr/bin/env python3
"""Python Patroni as a compatibility peer for patroni-rs end-to-end tests.

Every write goes through Patroni's own Kubernetes DCS class
(``patroni.dcs.kubernetes.Kubernetes``, PyPI ``patroni==4.1.5``), so the
objects and annotations it leaves in the API server are byte-for-byte what a
real Patroni node writes. Run it with the python of the venv built from
``requirements.txt`` next to this file; see README.md for usage.

Exit status: 0 on success, 1 when an operation failed (message on stderr),
2 on bad usage.
"""

import argparse
import json
import logging
import os
import sys
import time

PROG = 'patroni_peer'
DEFAULT_VERSION = '4.1.5'
LEGACY_VERSION = '3.3.2'
DEFAULT_SYSID = '7458224513374582711'
DEFAULT_SCHEDULED_AT = '2035-01-01T12:00:00+00:00'
DEFAULT_LSN = 67110344
DEFAULT_HISTORY_LSN = 25165984
DYNAMIC_CONFIG = {
    'ttl': 30,
    'loop_wait': 10,
    'retry_timeout': 10,
    'maximum_lag_on_failover': 1048576,
    'postgresql': {'use_pg_rewind': True, 'parameters': {'max_connections': 100}},
}

log = logging.getLogger(PROG)


class PeerError(Exception):
    """A failure to report on stderr with exit status 1."""


# --------------------------------------------------------------------------------------------
# Patroni plumbing
# --------------------------------------------------------------------------------------------

def import_patroni(kubeconfig):
    """Import Patroni's Kubernetes DCS with $KUBECONFIG pointing at *kubeconfig*.

    Patroni reads $KUBECONFIG once, at import time, into a module constant; both are set so the
    order of imports does not matter.
    """
    os.environ['KUBECONFIG'] = kubeconfig
    try:
        from patroni.dcs import kubernetes as k8s
    except ImportError as e:
        raise PeerError(f'cannot import patroni ({e}); run this script with the venv python '
                        '(pip install -r crates/e2e/py/requirements.txt)')
    k8s.KUBE_CONFIG_DEFAULT_LOCATION = kubeconfig
    return k8s


def check_kubeconfig(args):
    path = args.kubeconfig or os.environ.get('KUBECONFIG')
    if not path:
        raise PeerError('no kubeconfig: pass --kubeconfig PATH or set KUBECONFIG')
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise PeerError(f'kubeconfig {path!r} does not exist')
    args.kubeconfig = path
    return path


def dcs_config(args, name, pod_ip=None, ctl=False, leader_label_value=None):
    """The ``kubernetes`` section as Patroni's get_dcs() hands it to the DCS class."""
    config = {
        'scope': args.scope,
        'name': name,
        'namespace': args.namespace,
        'labels': args.labels,
        'scope_label': args.scope_label,
        'use_endpoints': args.use_endpoints,
        'context': args.context,
        'ttl': args.ttl,
        'loop_wait': args.loop_wait,
        'retry_timeout': args.retry_timeout,
    }
    if ctl:
        config['patronictl'] = True
    if pod_ip:
        config['pod_ip'] = pod_ip
    if leader_label_value:
        config['leader_label_value'] = leader_label_value
    return config


def make_dcs(args, name, pod_ip=None, ctl=False, leader_label_value=None):
    k8s = import_patroni(args.kubeconfig)
    from patroni.postgresql.mpp import get_mpp
    config = dcs_config(args, name, pod_ip, ctl, leader_label_value)
    try:
        return k8s.Kubernetes(config, get_mpp({}))
    except FileNotFoundError as e:
        raise PeerError(f'cannot read kubeconfig: {e}')
    except (KeyError, TypeError) as e:
        raise PeerError(f'kubeconfig {args.kubeconfig!r} has no usable context {args.context!r} ({e!r})')


def load_cluster(dcs):
    """One HA-loop style cluster load (Ha.load_cluster_from_dcs): get_cluster + global config."""
    from patroni import global_config
    from patroni.exceptions import DCSError
    try:
        cluster = dcs.get_cluster()
    except DCSError as e:
        raise PeerError(f'get_cluster failed: {e} (is the API server at the kubeconfig address up?)')
    global_config.update(cluster)
    return cluster


def core_api(args):
    """Patroni's own minimal CoreV1Api client, configured from the kubeconfig."""
    k8s = import_patroni(args.kubeconfig)
    try:
        k8s.k8s_config.load_kube_config(context=args.context)
    except FileNotFoundError as e:
        raise PeerError(f'cannot read kubeconfig: {e}')
    except (KeyError, TypeError) as e:
        raise PeerError(f'kubeconfig {args.kubeconfig!r} has no usable context {args.context!r} ({e!r})')
    return k8s, k8s.k8s_client.CoreV1Api(k8s.k8s_client.ApiClient())


def api_call(k8s, what, func, *a, **kw):
    try:
        return func(*a, **kw)
    except k8s.k8s_client.rest.ApiException as e:
        body = e.body.decode('utf-8', 'replace') if isinstance(e.body, bytes) else e.body
        message = body
        try:
            message = json.loads(body).get('message', body)
        except Exception:
            pass
        raise PeerError(f'{what}: HTTP {e.status} {e.reason}: {message}')
    except k8s.K8sException as e:
        raise PeerError(f'{what}: {e}')


def selector(args):
    labels = dict(args.labels)
    labels[args.scope_label] = args.scope
    return labels


def ensure_pods(args, names):
    """Check that every named pod exists and carries the selector labels (optionally add them)."""
    k8s, api = core_api(args)
    want = selector(args)
    for name in names:
        pod = api_call(k8s, f'reading pod {args.namespace}/{name}', api.read_namespaced_pod, name, args.namespace)
        labels = pod.metadata.labels or {}
        missing = {k: v for k, v in want.items() if labels.get(k) != v}
        if not missing:
            continue
        if not args.label_pods:
            raise PeerError(f'pod {args.namespace}/{name} lacks selector labels {missing}: Patroni would not see '
                            'it as a member (add them, or pass --label-pods)')
        body = {'metadata': {'labels': missing}}
        api_call(k8s, f'labelling pod {args.namespace}/{name}', api.patch_namespaced_pod,
                 name, args.namespace, body)
        log.info('labelled pod %s with %s', name, missing)


def member_status(name, ip, role, lsn, timeline, version=DEFAULT_VERSION, tags=None, state='running'):
    """The pod ``status`` document exactly as Ha.touch_member() builds it."""
    data = {
        'conn_url': f'postgres://{ip}:5432/postgres',
        'api_url': f'http://{ip}:8008/patroni',
        'state': state,
        'role': role,
        'version': version,
    }
    if tags:
        data['tags'] = tags
    if state in ('running', 'restarting', 'starting'):
        data['xlog_location'] = lsn
        if role not in ('primary', 'master', 'standby_leader'):
            data['replay_lsn'] = lsn
            data['receive_lsn'] = lsn
            data['replication_state'] = 'streaming'
        if timeline:
            data['timeline'] = timeline
    return data


def slot_name(member_name):
    from patroni.dcs import slot_name_from_member_name
    return slot_name_from_member_name(member_name)


def need(ok, what):
    if not ok:
        raise PeerError(f'{what} failed (Patroni returned {ok!r}; rerun with -v for its log)')
    return ok


# --------------------------------------------------------------------------------------------
# dump
# --------------------------------------------------------------------------------------------

def member_json(member, keep_pod_labels=False):
    data = dict(member.data)
    if not keep_pod_labels:
        data.pop('pod_labels', None)
    return {'name': member.name, 'version': str(member.version), 'data': data}


def cluster_json(dcs, cluster, keep_pod_labels=False):
    names = {m.name for m in cluster.members}

    config = None
    if cluster.config is not None:
        c = cluster.config
        config = {'version': str(c.version),
                  'modify_version': str(c.modify_version) if c.modify_version else None,
                  'data': c.data}

    leader = None
    if cluster.leader is not None:
        lm = cluster.leader.member
        leader = {'version': str(cluster.leader.version),
                  'name': cluster.leader.name or '',
                  'member': member_json(lm, keep_pod_labels) if lm.name and lm.name in names else None}

    s = cluster.status
    status = {'last_lsn': s.last_lsn, 'slots': s.slots, 'retain_slots': list(s.retain_slots)}

    failover = None
    if cluster.failover is not None:
        f = cluster.failover
        raw = dcs._kinds.get(dcs.failover_path)
        raw_at = ((raw and raw.metadata.annotations) or {}).get('scheduled_at')
        scheduled_at = raw_at if raw_at else (f.scheduled_at.isoformat() if f.scheduled_at else None)
        failover = {'version': str(f.version), 'leader': f.leader, 'candidate': f.candidate,
                    'scheduled_at': scheduled_at}

    sy = cluster.sync
    sync = {'version': str(sy.version) if sy.version is not None else None,
            'leader': sy.leader,
            'sync_standby': sorted(n.strip() for n in (sy.sync_standby or '').split(',') if n.strip()),
            'quorum': sy.quorum}

    history = None
    if cluster.history is not None:
        history = {'version': str(cluster.history.version), 'lines': [list(x) for x in cluster.history.lines]}

    return {
        'initialize': cluster.initialize,
        'config': config,
        'leader': leader,
        'status': status,
        'members': [member_json(m, keep_pod_labels) for m in sorted(cluster.members, key=lambda m: m.name)],
        'failover': failover,
        'sync': sync,
        'history': history,
        'failsafe': cluster.failsafe,
    }


def emit(args, doc):
    json.dump(doc, sys.stdout, indent=args.indent)
    sys.stdout.write('\n')
    sys.stdout.flush()


def cmd_dump(args):
    dcs = make_dcs(args, args.name or args.scope, ctl=True)
    cluster = load_cluster(dcs)
    emit(args, cluster_json(dcs, cluster, args.keep_pod_labels))


# --------------------------------------------------------------------------------------------
# write-scenario
# --------------------------------------------------------------------------------------------

def parse_members(values):
    members = []
    for value in values:
        name, sep, ip = value.partition('=')
        if not sep or not name or not ip:
            raise PeerError(f'--member {value!r}: expected NAME=IP')
        members.append((name, ip))
    if len(members) < 2:
        raise PeerError('write-scenario needs at least two --member NAME=IP (a primary and a replica)')
    if len({n for n, _ in members}) != len(members):
        raise PeerError('--member names must be unique')
    return members


def reset_cluster(args):
    """Delete the cluster's kind objects the way `patronictl remove` does (DELETE collection by selector)."""
    k8s, api = core_api(args)
    dcs = make_dcs(args, args.scope, ctl=True)
    need(dcs.delete_cluster(), 'delete_cluster')
    kind = 'endpoints' if args.use_endpoints else 'config_map'
    list_func = getattr(api, f'list_namespaced_{kind}')
    label_selector = ','.join(f'{k}={v}' for k, v in selector(args).items())
    deadline = time.time() + args.retry_timeout
    while True:
        left = api_call(k8s, 'listing cluster objects', list_func, args.namespace, label_selector=label_selector)
        if not left.items:
            return
        if time.time() > deadline:
            raise PeerError(f'--reset: objects still present: {[o.metadata.name for o in left.items]}')
        time.sleep(0.2)


def cmd_write_scenario(args):
    import dateutil.parser

    members = parse_members(args.member)
    names = [n for n, _ in members]
    tags = {}
    for value in args.tags or []:
        name, sep, doc = value.partition('=')
        if not sep or name not in names:
            raise PeerError(f'--tags {value!r}: expected NAME=JSON with NAME one of the --member names')
        tags[name] = json_object(doc, '--tags')
    if args.tags is None and len(members) >= 3:
        tags[names[-1]] = {'nofailover': True}
    try:
        scheduled_at = dateutil.parser.parse(args.scheduled_at)
    except (ValueError, OverflowError) as e:
        raise PeerError(f'--scheduled-at {args.scheduled_at!r}: {e}')
    if scheduled_at.tzinfo is None:
        raise PeerError('--scheduled-at needs a UTC offset, e.g. 2035-01-01T12:00:00+00:00')

    ensure_pods(args, names)
    if args.reset:
        reset_cluster(args)

    (leader_name, leader_ip), replicas = members[0], members[1:]
    lsn, timeline = args.lsn, args.timeline
    dynamic = json.loads(json.dumps(DYNAMIC_CONFIG))
    if args.failsafe:
        dynamic['failsafe_mode'] = True
    if args.synchronous_mode:
        dynamic['synchronous_mode'] = True

    # One DCS instance per member, as if each ran its own Patroni.
    dcs = {name: make_dcs(args, name, pod_ip=ip,
                          leader_label_value='master' if args.legacy_master and name == leader_name else None)
           for name, ip in members}
    primary = dcs[leader_name]

    # Every member's first HA cycle: all see an empty cluster and race for initialisation
    # (Ha.bootstrap: only members without nofailover). The primary wins; the others race with
    # that same stale view, so their create gets 409 AlreadyExists and initialize() returns False.
    views = {name: load_cluster(d) for name, d in dcs.items()}
    cluster = views[leader_name]
    missing = [n for n in names if not cluster.get_member(n, fallback_to_leader=False)]
    if missing:
        raise PeerError(f'pods {missing} are not visible through selector {selector(args)} in namespace '
                        f'{args.namespace}')
    if cluster.initialize is not None or cluster.leader is not None or cluster.config is not None:
        raise PeerError(f'cluster {args.scope!r} already has state (initialize={cluster.initialize!r}, '
                        f'leader={cluster.leader and cluster.leader.name!r}); use a fresh scope or --reset')
    need(primary.initialize(create_new=True), f'{leader_name}: initialize race')
    for name, _ in replicas:
        if views[name].initialize is None and not tags.get(name, {}).get('nofailover'):
            if dcs[name].initialize(create_new=True):
                raise PeerError(f'{name} won an initialize race that {leader_name} had already won')

    # Bootstrap finished on the primary (Ha.post_bootstrap): sysid, dynamic config, take the lock.
    cluster = load_cluster(primary)
    primary.initialize(create_new=(cluster.initialize is None), sysid=args.sysid)
    need(primary.set_config_value(json.dumps(dynamic, separators=(',', ':'))), f'{leader_name}: set_config_value')
    need(primary.take_leader(), f'{leader_name}: take_leader')

    # End of that cycle: touch_member with the primary's status (pod gets role=primary/master).
    cluster = load_cluster(primary)
    if args.legacy_master:
        data = member_status(leader_name, leader_ip, 'master', lsn, timeline, LEGACY_VERSION,
                             tags.get(leader_name))
    else:
        data = member_status(leader_name, leader_ip, 'primary', lsn, timeline, tags=tags.get(leader_name))
    need(primary.touch_member(data), f'{leader_name}: touch_member')

    # Replicas cloned from the primary and streaming.
    for name, ip in replicas:
        load_cluster(dcs[name])
        data = member_status(name, ip, 'replica', lsn, timeline, tags=tags.get(name))
        need(dcs[name].touch_member(data), f'{name}: touch_member')

    # Next primary HA cycle: renew the lock with status (Ha.update_lock(update_status=True)).
    cluster = load_cluster(primary)
    slots = {slot_name(name): lsn for name, _ in replicas if not tags.get(name, {}).get('nostream')}
    failsafe = None
    if args.failsafe:
        failsafe = {m.name: m.api_url for m in cluster.members if m.api_url}
    need(primary.update_leader(cluster, lsn, slots or None, failsafe), f'{leader_name}: update_leader')
    history = [[1, DEFAULT_HISTORY_LSN, 'no recovery target specified', '2025-03-01T10:10:00.123456+00:00',
                leader_name]]
    need(primary.set_history_value(json.dumps(history, separators=(',', ':'))), f'{leader_name}: set_history_value')
    sync = primary.write_sync_state(leader_name, [replicas[0][0]], 0, version=cluster.sync.version)
    need(sync is not None, f'{leader_name}: write_sync_state')

    # patronictl switchover --scheduled, handled by the primary's REST API.
    load_cluster(primary)
    need(primary.manual_failover(leader_name, replicas[0][0], scheduled_at=scheduled_at),
         f'{leader_name}: manual_failover')

    emit(args, {
        'scope': args.scope,
        'namespace': args.namespace,
        'use_endpoints': args.use_endpoints,
        'leader': leader_name,
        'members': names,
        'sysid': args.sysid,
        'config': dynamic,
        'slots': slots,
        'history': history,
        'sync_standby': [replicas[0][0]],
        'failover': {'leader': leader_name, 'candidate': replicas[0][0], 'scheduled_at': scheduled_at.isoformat()},
        'failsafe': failsafe,
        'legacy_master': args.legacy_master,
        'tags': tags,
    })


# --------------------------------------------------------------------------------------------
# single operations
# --------------------------------------------------------------------------------------------

def json_object(text, what):
    try:
        value = json.loads(text)
    except ValueError as e:
        raise PeerError(f'{what}: invalid JSON: {e}')
    if not isinstance(value, dict):
        raise PeerError(f'{what}: expected a JSON object')
    return value


def require_name(args):
    if not args.name:
        raise PeerError(f'{args.command} needs --name MEMBER (the pod name)')
    return args.name


def cmd_touch_member(args):
    name = require_name(args)
    if args.data is not None:
        data = json_object(args.data, '--data')
        for key in ('state', 'role'):
            if key not in data:
                raise PeerError(f'--data must carry {key!r} (Patroni reads it to pick the role label)')
    else:
        if not args.ip:
            raise PeerError('touch-member needs --ip IP (or a full --data JSON)')
        tags = json_object(args.tags, '--tags') if args.tags else None
        data = member_status(name, args.ip, args.role, args.lsn, args.timeline, args.version, tags, args.state)
    if args.label_pods:
        ensure_pods(args, [name])
    dcs = make_dcs(args, name, pod_ip=args.ip)
    cluster = load_cluster(dcs)
    if not cluster.get_member(name, fallback_to_leader=False):
        raise PeerError(f'pod {name} is not visible through selector {selector(args)} in namespace '
                        f'{args.namespace}')
    need(dcs.touch_member(data), f'{name}: touch_member')
    emit(args, {'name': name, 'data': data})


def cmd_acquire(args):
    name = require_name(args)
    dcs = make_dcs(args, name, pod_ip=args.ip)
    deadline = time.time() + args.wait
    while True:
        cluster = load_cluster(dcs)
        holder = cluster.leader and cluster.leader.name
        if not holder or holder == name or args.force:
            break
        if time.time() >= deadline:
            raise PeerError(f'lock held by {holder!r} (as Patroni observes it; pass --wait SECONDS to wait '
                            'for it to expire, or --force)')
        time.sleep(min(1.0, max(0.0, deadline - time.time())))
    if holder == name and not args.force:
        # What the HA loop does when it already holds the lock: renew it.
        seed_retain_slots(dcs, cluster)
        ok = dcs.update_leader(cluster, args.lsn, None, None)
        action = 'update_leader'
    else:
        ok = dcs.acquire_leader_lock()
        action = 'attempt_to_acquire_leader'
    need(ok, f'{name}: {action}')
    observed = dcs._leader_observed_record.get('leader')
    emit(args, {'name': name, 'acquired': True, 'previous': observed or None,
                'previous_expired': bool(observed) and not holder, 'action': action})


def seed_retain_slots(dcs, cluster):
    """A fresh process renewing a lock it holds: keep the retain_slots it would remember.

    A long-running Patroni leader keeps member slot names in memory for member_slots_ttl and
    seeds them from the stored retain_slots when it acquires the lock
    (AbstractDCS.acquire_leader_lock); do the same so a one-shot renew does not drop them.
    """
    now = time.time()
    dcs._last_retain_slots = {name: now for name in cluster.status.retain_slots}


def cmd_renew(args):
    name = require_name(args)
    slots = json_object(args.slots, '--slots') if args.slots else None
    failsafe = json_object(args.failsafe, '--failsafe') if args.failsafe else None
    dcs = make_dcs(args, name, pod_ip=args.ip)
    cluster = load_cluster(dcs)
    holder = cluster.leader and cluster.leader.name
    if holder != name:
        raise PeerError(f'{name} does not hold the lock (holder: {holder!r})')
    seed_retain_slots(dcs, cluster)
    need(dcs.update_leader(cluster, args.lsn, slots, failsafe), f'{name}: update_leader')
    emit(args, {'name': name, 'renewed': True})


def cmd_release(args):
    name = require_name(args)
    dcs = make_dcs(args, name, pod_ip=args.ip)
    cluster = load_cluster(dcs)
    kind = dcs._kinds.get(dcs.leader_path)
    holder = kind and (kind.metadata.annotations or {}).get('leader')
    if holder != name:
        raise PeerError(f'{name} does not hold the lock (leader annotation: {holder!r})')
    need(dcs.delete_leader(cluster.leader, args.lsn), f'{name}: delete_leader')
    emit(args, {'name': name, 'released': True})


def cmd_raw_annotations(args):
    k8s, api = core_api(args)
    func = {'configmap': api.read_namespaced_config_map,
            'endpoints': api.read_namespaced_endpoints,
            'pod': api.read_namespaced_pod}[args.kind]
    obj = api_call(k8s, f'reading {args.kind} {args.namespace}/{args.object}', func, args.object, args.namespace)
    doc = obj.to_dict()
    meta = doc.get('metadata', {})
    out = {'kind': doc.get('kind'), 'name': meta.get('name'), 'resourceVersion': meta.get('resourceVersion'),
           'annotations': meta.get('annotations') or {}, 'labels': meta.get('labels') or {}}
    if args.kind == 'endpoints':
        out['subsets'] = json.loads(json.dumps(doc.get('subsets') or [], default=lambda o: o.to_dict()))
    emit(args, json.loads(json.dumps(out, default=lambda o: o.to_dict())))


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------

def labels_arg(text):
    try:
        value = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f'invalid JSON: {e}')
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise argparse.ArgumentTypeError('expected a JSON object of string values')
    return value


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group('cluster')
    g.add_argument('--kubeconfig', help='kubeconfig file (default: $KUBECONFIG)')
    g.add_argument('--context', default='testenv', help='kubeconfig context (default: %(default)s; Patroni '
                   'itself defaults to kind-kind)')
    g.add_argument('--namespace', default='default', help='Kubernetes namespace (default: %(default)s)')
    g.add_argument('--scope', required=True, help='cluster name (Patroni scope)')
    g.add_argument('--use-endpoints', action='store_true', help='Endpoints mode instead of ConfigMaps')
    g.add_argument('--labels', type=labels_arg, default={'application': 'patroni'},
                   help='kubernetes.labels as JSON (default: {"application": "patroni"})')
    g.add_argument('--scope-label', default='cluster-name', help='kubernetes.scope_label (default: %(default)s)')
    g.add_argument('--name', help='member name (= pod name)')
    g.add_argument('--ttl', type=int, default=30, help='ttl (default: %(default)s)')
    g.add_argument('--loop-wait', type=int, default=10, help='loop_wait (default: %(default)s)')
    g.add_argument('--retry-timeout', type=int, default=10, help='retry_timeout (default: %(default)s)')
    g.add_argument('--indent', type=int, default=None, help='indent JSON output (default: one line)')
    g.add_argument('-v', '--verbose', action='count', default=0, help='Patroni log on stderr (-v info, -vv debug)')

    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0])
    sub = p.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True

    s = sub.add_parser('write-scenario', parents=[common], help='write a complete cluster state as N members')
    s.add_argument('--member', action='append', required=True, metavar='NAME=IP',
                   help='a member (pod name and IP), repeat; the first becomes the primary')
    s.add_argument('--sysid', default=DEFAULT_SYSID, help='system identifier (default: %(default)s)')
    s.add_argument('--lsn', type=int, default=DEFAULT_LSN, help='WAL position of everyone (default: %(default)s)')
    s.add_argument('--timeline', type=int, default=1, help='timeline in member status (default: %(default)s)')
    s.add_argument('--scheduled-at', default=DEFAULT_SCHEDULED_AT,
                   help='scheduled switchover time, ISO with offset (default: %(default)s)')
    s.add_argument('--tags', action='append', metavar='NAME=JSON',
                   help='tags of a member, repeat (default: {"nofailover": true} on the last of 3+ members)')
    s.add_argument('--failsafe', action='store_true',
                   help='also set failsafe_mode in the config and write the failsafe annotation')
    s.add_argument('--legacy-master', action='store_true',
                   help='the primary reports itself as Patroni 3.3.2 does: role "master", version 3.3.2, '
                        'pod label role=master')
    s.add_argument('--synchronous-mode', action='store_true',
                   help='also set synchronous_mode in the config (patronictl then shows the sync standby)')
    s.add_argument('--label-pods', action='store_true',
                   help='add missing selector labels to the member pods first (as a StatefulSet template would)')
    s.add_argument('--reset', action='store_true',
                   help="first delete the scope's ConfigMaps/Endpoints as `patronictl remove` does")
    s.set_defaults(func=cmd_write_scenario)

    s = sub.add_parser('dump', parents=[common], help="print Patroni's cluster view as normalised JSON")
    s.add_argument('--keep-pod-labels', action='store_true',
                   help="keep the 'pod_labels' key the Kubernetes DCS adds to every Member.data")
    s.set_defaults(func=cmd_dump)

    s = sub.add_parser('touch-member', parents=[common], help="write member --name's status annotation")
    s.add_argument('--ip', help='member IP: builds conn_url/api_url (and leader subsets pod_ip)')
    s.add_argument('--role', default='replica', help='role (default: %(default)s)')
    s.add_argument('--state', default='running', help='state (default: %(default)s)')
    s.add_argument('--lsn', type=int, default=DEFAULT_LSN, help='xlog_location (default: %(default)s)')
    s.add_argument('--timeline', type=int, default=1, help='timeline (default: %(default)s)')
    s.add_argument('--version', default=DEFAULT_VERSION, help='Patroni version (default: %(default)s)')
    s.add_argument('--tags', help='tags JSON object')
    s.add_argument('--data', help='the whole status JSON object instead of the flags above')
    s.add_argument('--label-pods', action='store_true', help='add missing selector labels to the pod first')
    s.set_defaults(func=cmd_touch_member)

    s = sub.add_parser('acquire', parents=[common], help='take the leader lock as --name')
    s.add_argument('--ip', help='pod_ip for the leader Endpoints subsets (default: the pod status.podIP)')
    s.add_argument('--wait', type=float, default=0.0,
                   help='seconds to wait for a lock held by another member to expire (default: 0)')
    s.add_argument('--force', action='store_true', help='attempt even while another member holds the lock')
    s.add_argument('--lsn', type=int, default=None, help='optime when renewing a lock already held')
    s.set_defaults(func=cmd_acquire)

    s = sub.add_parser('renew', parents=[common], help='renew the leader lock held by --name (update_leader)')
    s.add_argument('--ip', help='pod_ip for the leader Endpoints subsets (default: the pod status.podIP)')
    s.add_argument('--lsn', type=int, default=None, help='optime (with --slots: status annotations)')
    s.add_argument('--slots', help='slots JSON object {name: lsn}')
    s.add_argument('--failsafe', help='failsafe JSON object {name: api_url}')
    s.set_defaults(func=cmd_renew)

    s = sub.add_parser('release', parents=[common], help='release the leader lock held by --name')
    s.add_argument('--ip', help='pod_ip (unused by release; accepted for symmetry)')
    s.add_argument('--lsn', type=int, default=None, help='optime to write with the release')
    s.set_defaults(func=cmd_release)

    s = sub.add_parser('raw-annotations', parents=[common], help="print an object's annotations and labels")
    s.add_argument('--object', required=True, help='object name')
    s.add_argument('--kind', required=True, choices=['configmap', 'endpoints', 'pod'])
    s.set_defaults(func=cmd_raw_annotations)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(stream=sys.stderr, level=level,
                        format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    try:
        check_kubeconfig(args)
        args.func(args)
    except PeerError as e:
        print(f'{PROG} {args.command}: error: {e}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    except Exception as e:  # anything unexpected from Patroni or the API: still one clear line, exit 1
        logging.getLogger(PROG).debug('unexpected error', exc_info=True)
        print(f'{PROG} {args.command}: error: {type(e).__name__}: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
