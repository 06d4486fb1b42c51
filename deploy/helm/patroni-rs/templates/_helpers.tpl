{{/* The chart's name: nameOverride or the chart. */}}
{{- define "patroni-rs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name: fullnameOverride, or the release (with the name unless it contains it).
It names the StatefulSet, the Services and the Secret, and is the Patroni scope. */}}
{{- define "patroni-rs.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "patroni-rs.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the cluster's pods (also Patroni's kubernetes.labels). */}}
{{- define "patroni-rs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "patroni-rs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "patroni-rs.labels" -}}
helm.sh/chart: {{ include "patroni-rs.chart" . }}
{{ include "patroni-rs.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: patroni-rs
{{- end }}

{{- define "patroni-rs.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "patroni-rs.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name: the existing ServiceAccount to use when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "patroni-rs.secretName" -}}
{{- default (include "patroni-rs.fullname" .) .Values.credentials.existingSecret }}
{{- end }}

{{- define "patroni-rs.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Patroni scope: the full name. */}}
{{- define "patroni-rs.scope" -}}
{{- include "patroni-rs.fullname" . }}
{{- end }}

{{/* Patroni's kubernetes.scope_label (default cluster-name): the pods carry it. */}}
{{- define "patroni-rs.scopeLabel" -}}
{{- dig "kubernetes" "scope_label" "cluster-name" .Values.patroni }}
{{- end }}

{{/* The data directory inside the volume. */}}
{{- define "patroni-rs.dataDir" -}}
{{- printf "%s/pgroot/data" (trimSuffix "/" .Values.persistentVolume.mountPath) }}
{{- end }}

{{/* The DCS the members use: kubernetes, etcd3 or zookeeper. Fails, naming the values, unless
exactly one of kubernetes.dcs.enable, etcd.enable and zookeeper.enable is true and the chosen
store says where it is. */}}
{{- define "patroni-rs.dcs" -}}
{{- $on := list }}
{{- if .Values.kubernetes.dcs.enable }}{{ $on = append $on "kubernetes.dcs.enable" }}{{ end }}
{{- if .Values.etcd.enable }}{{ $on = append $on "etcd.enable" }}{{ end }}
{{- if .Values.zookeeper.enable }}{{ $on = append $on "zookeeper.enable" }}{{ end }}
{{- if eq (len $on) 0 }}
{{- fail "no DCS: set exactly one of kubernetes.dcs.enable, etcd.enable, zookeeper.enable to true" }}
{{- else if gt (len $on) 1 }}
{{- fail (printf "%s are true: set exactly one of kubernetes.dcs.enable, etcd.enable, zookeeper.enable (etcd or ZooKeeper with kubernetes.dcs.enable=false)" (join " and " $on)) }}
{{- end }}
{{- if and .Values.etcd.deployChart (not .Values.etcd.enable) }}
{{- fail "etcd.deployChart: deploys an etcd for the members, but etcd.enable is false (set both, with kubernetes.dcs.enable=false)" }}
{{- end }}
{{- if and .Values.zookeeper.deployChart (not .Values.zookeeper.enable) }}
{{- fail "zookeeper.deployChart: deploys a ZooKeeper for the members, but zookeeper.enable is false (set both, with kubernetes.dcs.enable=false)" }}
{{- end }}
{{- if .Values.etcd.enable }}
{{- if not (or .Values.etcd.host .Values.etcd.discovery .Values.etcd.deployChart) }}
{{- fail "etcd.enable: the members need to know where etcd is: set etcd.host (host:port[,host:port…]), etcd.discovery (a DNS SRV domain) or etcd.deployChart=true" }}
{{- end }}
{{- "etcd3" }}
{{- else if .Values.zookeeper.enable }}
{{- if not (or .Values.zookeeper.hosts .Values.zookeeper.deployChart) }}
{{- fail "zookeeper.enable: the members need to know where ZooKeeper is: set zookeeper.hosts (host:port[,host:port…]) or zookeeper.deployChart=true" }}
{{- end }}
{{- "zookeeper" }}
{{- else }}
{{- "kubernetes" }}
{{- end }}
{{- end }}

{{/* The deployed etcd: StatefulSet and client Service `<fullname>-etcd`, headless Service
`<fullname>-etcd-headless`. */}}
{{- define "patroni-rs.etcd.fullname" -}}
{{- printf "%s-etcd" (include "patroni-rs.fullname" . | trunc 50 | trimSuffix "-") }}
{{- end }}

{{/* The deployed ZooKeeper: StatefulSet and client Service `<fullname>-zookeeper`, headless
Service `<fullname>-zookeeper-headless`. */}}
{{- define "patroni-rs.zookeeper.fullname" -}}
{{- printf "%s-zookeeper" (include "patroni-rs.fullname" . | trunc 45 | trimSuffix "-") }}
{{- end }}

{{/* Labels that select a deployed store's pods: `store` is "etcd" or "zookeeper". */}}
{{- define "patroni-rs.storeSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-%s" (include "patroni-rs.name" .root) .store }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: dcs
{{- end }}

{{/* Labels of a deployed store's objects. */}}
{{- define "patroni-rs.storeLabels" -}}
helm.sh/chart: {{ include "patroni-rs.chart" .root }}
{{ include "patroni-rs.storeSelectorLabels" . }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: patroni-rs
{{- end }}

{{/* `<pod>.<headless service>.<namespace>.svc.<clusterDomain>` of a deployed store's member
`index`: dict "root" . "name" <store fullname> "index" N. */}}
{{- define "patroni-rs.storeMemberHost" -}}
{{- printf "%s-%d.%s-headless.%s.svc.%s" .name (int .index) .name .root.Release.Namespace .root.Values.clusterDomain }}
{{- end }}

{{/* The etcd endpoints the members use (PATRONI_ETCD3_HOSTS): etcd.host, else the deployed
members' client URLs; empty with discovery only. */}}
{{- define "patroni-rs.etcdHosts" -}}
{{- if .Values.etcd.host }}
{{- .Values.etcd.host }}
{{- else if and .Values.etcd.deployChart (not .Values.etcd.discovery) }}
{{- $name := include "patroni-rs.etcd.fullname" . }}
{{- $hosts := list }}
{{- range $i := until (int .Values.etcd.replicaCount) }}
{{- $hosts = append $hosts (printf "%s:2379" (include "patroni-rs.storeMemberHost" (dict "root" $ "name" $name "index" $i))) }}
{{- end }}
{{- join "," $hosts }}
{{- end }}
{{- end }}

{{/* The ZooKeeper servers the members use (PATRONI_ZOOKEEPER_HOSTS). */}}
{{- define "patroni-rs.zookeeperHosts" -}}
{{- if .Values.zookeeper.hosts }}
{{- .Values.zookeeper.hosts }}
{{- else }}
{{- $name := include "patroni-rs.zookeeper.fullname" . }}
{{- $hosts := list }}
{{- range $i := until (int .Values.zookeeper.replicaCount) }}
{{- $hosts = append $hosts (printf "%s:2181" (include "patroni-rs.storeMemberHost" (dict "root" $ "name" $name "index" $i))) }}
{{- end }}
{{- join "," $hosts }}
{{- end }}
{{- end }}

{{/* The callback that labels a member's pod with its role when the DCS is not Kubernetes
(Patroni labels pods only with its Kubernetes DCS; Spilo's callback_role.py does it
otherwise). */}}
{{- define "patroni-rs.labelCallback" -}}
{{- printf "/usr/local/bin/patroni-k8s-callback --role-label %s --leader-label-value %s --follower-label-value %s --standby-leader-label-value %s" .Values.kubernetes.roleLabel .Values.kubernetes.leaderLabelValue .Values.kubernetes.followerLabelValue .Values.kubernetes.standbyLeaderLabelValue }}
{{- end }}
