{{/* Backups (docs/backups.md): the effective backup.* values, with the seed chart's walE.*
aliases folded in, as YAML (`include "patroni-rs.backup" . | fromYaml`). Fails, naming the values,
on an alias that disagrees with its backup.* value and on combinations that cannot work.

Keys: enable, tool, schedule, retain, megabytes, percentage, secret, repository (s3 | gcs |
filesystem | ""), restore, targetTime, targetLsn. */}}
{{- define "patroni-rs.backup" -}}
{{- $b := .Values.backup }}
{{- $w := .Values.walE | default dict }}
{{- /* alias → [its backup.* name, the backup.* value, that value's default in values.yaml] */}}
{{- $aliases := list
  (list "enable" "backup.enable" $b.enable false)
  (list "scheduleCronJob" "backup.schedule" $b.schedule "00 01 * * *")
  (list "retainBackups" "backup.retain" $b.retain 2)
  (list "s3Bucket" "backup.s3.bucket" $b.s3.bucket "")
  (list "gcsBucket" "backup.gcs.bucket" $b.gcs.bucket "")
  (list "kubernetesSecret" "backup.existingSecret" $b.existingSecret "")
  (list "backupThresholdMegabytes" "backup.replicaThresholdMegabytes" $b.replicaThresholdMegabytes 1024)
  (list "backupThresholdPercentage" "backup.replicaThresholdPercentage" $b.replicaThresholdPercentage 30) }}
{{- $eff := dict }}
{{- range $a := $aliases }}
{{- $alias := index $a 0 }}{{ $name := index $a 1 }}{{ $value := index $a 2 }}{{ $default := index $a 3 }}
{{- $set := "" }}
{{- if hasKey $w $alias }}{{ $set = index $w $alias }}{{ end }}
{{- if or (not (hasKey $w $alias)) (kindIs "invalid" $set) }}
{{- $_ := set $eff $name $value }}
{{- else }}
{{- if and (ne (toString $value) (toString $set)) (ne (toString $value) (toString $default)) }}
{{- fail (printf "walE.%s (%v) and %s (%v) disagree: walE.%s is an alias of %s; set one of them" $alias $set $name $value $alias $name) }}
{{- end }}
{{- $_ := set $eff $name $set }}
{{- end }}
{{- end }}
{{- $fs := $b.filesystem }}
{{- $repos := list }}
{{- if get $eff "backup.s3.bucket" }}{{ $repos = append $repos "s3" }}{{ end }}
{{- if get $eff "backup.gcs.bucket" }}{{ $repos = append $repos "gcs" }}{{ end }}
{{- if $fs.path }}{{ $repos = append $repos "filesystem" }}{{ end }}
{{- $repoValue := dict "s3" "backup.s3.bucket" "gcs" "backup.gcs.bucket" "filesystem" "backup.filesystem.path" }}
{{- $enable := get $eff "backup.enable" }}
{{- if $enable }}
{{- if eq (len $repos) 0 }}
{{- fail "backup.enable: no repository: set one of backup.s3.bucket (walE.s3Bucket), backup.gcs.bucket (walE.gcsBucket), backup.filesystem.path" }}
{{- else if gt (len $repos) 1 }}
{{- $names := list }}{{ range $repos }}{{ $names = append $names (get $repoValue .) }}{{ end }}
{{- fail (printf "%s are set: a cluster backs up to exactly one repository" (join " and " $names)) }}
{{- end }}
{{- end }}
{{- $repo := $repos | first | default "" }}
{{- if and (eq $repo "filesystem") (eq $b.tool "barman-cloud") }}
{{- fail "backup.filesystem.path: a filesystem repository is pgBackRest's only; backup.tool is barman-cloud (use backup.tool=pgbackrest or an S3 bucket)" }}
{{- end }}
{{- if and (eq $repo "s3") (eq $b.tool "barman-cloud") (eq (toString $b.s3.verifyTls) "false") }}
{{- fail "backup.s3.verifyTls: Barman Cloud (boto3) cannot skip TLS verification; keep it true and give the server's CA in AWS_CA_BUNDLE (backup.existingSecret / extraEnv), or use backup.tool=pgbackrest" }}
{{- end }}
{{- if and (eq $repo "gcs") (eq $b.tool "barman-cloud") }}
{{- fail "backup.gcs.bucket: the image's Barman Cloud has no GCS client (Debian ships no python3-google-cloud-storage); use backup.tool=pgbackrest for GCS" }}
{{- end }}
{{- if eq $repo "filesystem" }}
{{- if and $fs.existingClaim $fs.hostPath }}
{{- fail "backup.filesystem.existingClaim and backup.filesystem.hostPath are set: the repository's volume is one of them" }}
{{- else if not (or $fs.existingClaim $fs.hostPath) }}
{{- fail "backup.filesystem.path: the repository needs a volume every member mounts: set backup.filesystem.existingClaim (a shared PVC) or backup.filesystem.hostPath (a node directory)" }}
{{- end }}
{{- else if or $fs.existingClaim $fs.hostPath }}
{{- if $enable }}
{{- fail (printf "backup.filesystem.%s: a volume for a filesystem repository, but backup.filesystem.path is empty (set where to mount it)" (ternary "existingClaim" "hostPath" (not (empty $fs.existingClaim)))) }}
{{- end }}
{{- end }}
{{- $r := $b.restore }}
{{- if and $r.enable (not $enable) }}
{{- fail "backup.restore.enable: bootstraps the cluster from the backup repository, but backup.enable (walE.enable) is false" }}
{{- end }}
{{- if and $r.targetTime $r.targetLsn }}
{{- fail "backup.restore.targetTime and backup.restore.targetLsn are set: recovery stops at one target" }}
{{- end }}
{{- if and (or $r.targetTime $r.targetLsn) (not $r.enable) }}
{{- fail (printf "backup.restore.%s: a recovery target, but backup.restore.enable is false" (ternary "targetTime" "targetLsn" (not (empty $r.targetTime)))) }}
{{- end }}
enable: {{ $enable }}
tool: {{ $b.tool | quote }}
schedule: {{ get $eff "backup.schedule" | toString | quote }}
retain: {{ get $eff "backup.retain" }}
megabytes: {{ get $eff "backup.replicaThresholdMegabytes" }}
percentage: {{ get $eff "backup.replicaThresholdPercentage" }}
s3Bucket: {{ get $eff "backup.s3.bucket" | toString | quote }}
gcsBucket: {{ get $eff "backup.gcs.bucket" | toString | quote }}
secret: {{ get $eff "backup.existingSecret" | toString | quote }}
repository: {{ $repo | quote }}
restore: {{ and $enable $r.enable }}
{{- end }}

{{/* The pods' PGBACKUP_* environment (patroni-backup's settings) and the Secret's keys. */}}
{{- define "patroni-rs.backupEnv" -}}
{{- $b := include "patroni-rs.backup" . | fromYaml }}
{{- if $b.enable }}
{{- $v := .Values.backup }}
- {name: PGBACKUP_TOOL, value: {{ $b.tool | quote }}}
- {name: PGBACKUP_NAME, value: {{ include "patroni-rs.scope" . | quote }}}
- {name: PGBACKUP_RETAIN, value: {{ $b.retain | toString | quote }}}
- {name: PGBACKUP_DATA_DIR, value: {{ include "patroni-rs.dataDir" . | quote }}}
{{- if eq $b.repository "s3" }}
- {name: PGBACKUP_S3_BUCKET, value: {{ $b.s3Bucket | quote }}}
{{- with $v.s3.prefix }}
- {name: PGBACKUP_S3_PREFIX, value: {{ . | quote }}}
{{- end }}
{{- with $v.s3.endpoint }}
- {name: PGBACKUP_S3_ENDPOINT, value: {{ . | quote }}}
{{- end }}
{{- with $v.s3.region }}
- {name: PGBACKUP_S3_REGION, value: {{ . | quote }}}
{{- end }}
- {name: PGBACKUP_S3_PATH_STYLE, value: {{ $v.s3.pathStyle | toString | quote }}}
- {name: PGBACKUP_S3_VERIFY_TLS, value: {{ $v.s3.verifyTls | toString | quote }}}
{{- else if eq $b.repository "gcs" }}
- {name: PGBACKUP_GCS_BUCKET, value: {{ $b.gcsBucket | quote }}}
{{- with $v.gcs.prefix }}
- {name: PGBACKUP_GCS_PREFIX, value: {{ . | quote }}}
{{- end }}
{{- if $b.secret }}
- {name: GOOGLE_APPLICATION_CREDENTIALS, value: /etc/patroni-backup/key.json}
{{- end }}
{{- else }}
- {name: PGBACKUP_PATH, value: {{ $v.filesystem.path | quote }}}
{{- end }}
{{- end }}
{{- end }}

{{/* Patroni's configuration for backups, merged into 50-helm.yml: archive and restore commands,
the backup replica method, the agent's schedule and, with backup.restore, the bootstrap method. */}}
{{- define "patroni-rs.backupConfig" -}}
{{- $b := include "patroni-rs.backup" . | fromYaml }}
{{- if $b.enable }}
{{- $fetch := "patroni-backup wal-fetch \"%f\" \"%p\"" }}
postgresql:
  parameters:
    archive_mode: "on"
    archive_command: {{ printf "patroni-backup wal-push --tool=%s \"%%p\"" $b.tool | quote }}
  recovery_conf:
    restore_command: {{ $fetch | quote }}
  create_replica_methods: [backup, basebackup]
  backup:
    command: patroni-backup restore-replica
    threshold_megabytes: {{ $b.megabytes }}
    threshold_backup_size_percentage: {{ $b.percentage }}
    no_leader: 1
backup:
  schedule: {{ $b.schedule | quote }}
{{- if $b.restore }}
{{- $r := .Values.backup.restore }}
bootstrap:
  method: restore
  restore:
    command: patroni-backup restore
    {{- with $r.targetTime }}
    recovery_target_time: {{ . | quote }}
    {{- end }}
    {{- with $r.targetLsn }}
    recovery_target_lsn: {{ . | quote }}
    {{- end }}
    recovery_conf:
      restore_command: {{ $fetch | quote }}
      recovery_target_action: promote
      {{- with $r.targetTime }}
      recovery_target_time: {{ . | quote }}
      {{- end }}
      {{- with $r.targetLsn }}
      recovery_target_lsn: {{ . | quote }}
      {{- end }}
{{- end }}
{{- end }}
{{- end }}
