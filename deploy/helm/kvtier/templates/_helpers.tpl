{{/* Names and labels. */}}
{{- define "kvtier.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kvtier.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kvtier.labels" -}}
{{ include "kvtier.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/*
Refuses values this version of kvtierd cannot honour. kvtierd has no TLS and no token
auth yet (issue 7); enabling them here would deploy an unprotected API that looks
protected, so the chart fails instead.
*/}}
{{- define "kvtier.validate" -}}
{{- if .Values.auth.enabled -}}
{{- fail "auth.enabled: kvtierd has no token auth yet (issue 7); the gRPC API is served on the Unix socket only. Set auth.enabled=false." -}}
{{- end -}}
{{- if .Values.tls.enabled -}}
{{- fail "tls.enabled: kvtierd has no TLS yet (issue 7); the gRPC API is served on the Unix socket only. Set tls.enabled=false." -}}
{{- end -}}
{{- if not (has .Values.mode (list "sidecar" "daemonset")) -}}
{{- fail (printf "mode: %q is neither sidecar nor daemonset" .Values.mode) -}}
{{- end -}}
{{- end -}}

{{- define "kvtier.socketPath" -}}
{{ .Values.kvtierd.socketDir }}/kvtierd.sock
{{- end -}}

{{/*
kvtierd's memory request and limit in bytes: the host tier plus what the daemon holds
beside it: RocksDB's memtables (3 x 64 MiB, storage/kv_db.cc), its block cache, two
requests of the largest size in flight, and slack for the process and allocator.
*/}}
{{- define "kvtier.memoryBytes" -}}
{{- $k := .Values.kvtierd -}}
{{- $memtables := mul 3 67108864 -}}
{{- add (int64 $k.hostCapacityBytes) $memtables (int64 $k.blockCacheBytes) (mul 2 (int64 $k.maxRequestBytes)) (int64 $k.memorySlackBytes) -}}
{{- end -}}

{{/* The data emptyDir's sizeLimit: the disk tier + 25% for RocksDB's WAL and compaction. */}}
{{- define "kvtier.dataVolumeBytes" -}}
{{- $d := int64 .Values.kvtierd.diskCapacityBytes -}}
{{- add $d (div $d 4) -}}
{{- end -}}

{{- define "kvtier.args" -}}
{{- $k := .Values.kvtierd -}}
- {{ printf "--unix_socket=%s" (include "kvtier.socketPath" .) | quote }}
- "--listen="
- {{ printf "--metrics_listen=0.0.0.0:%d" (int $k.metricsPort) | quote }}
- {{ printf "--data_dir=%s" $k.dataDir | quote }}
- {{ printf "--host_capacity_bytes=%d" (int64 $k.hostCapacityBytes) | quote }}
- {{ printf "--disk_capacity_bytes=%d" (int64 $k.diskCapacityBytes) | quote }}
- {{ printf "--placement_policy=%s" $k.placementPolicy | quote }}
- {{ printf "--durability=%s" $k.durability | quote }}
- {{ printf "--cold_format=%s" $k.coldFormat | quote }}
- {{ printf "--block_cache_bytes=%d" (int64 $k.blockCacheBytes) | quote }}
- {{ printf "--max_request_bytes=%d" (int64 $k.maxRequestBytes) | quote }}
- {{ printf "--scorer_threads=%d" (int $k.scorerThreads) | quote }}
- {{ printf "--max_sessions=%d" (int $k.sessions.maxSessions) | quote }}
- {{ printf "--default_ttl_seconds=%d" (int64 $k.sessions.defaultTtlSeconds) | quote }}
- {{ printf "--max_ttl_seconds=%d" (int64 $k.sessions.maxTtlSeconds) | quote }}
- {{ printf "--tenant_quota_bytes=%d" (int64 $k.sessions.tenantQuotaBytes) | quote }}
{{- with $k.sessions.tenantQuotas }}
- {{ printf "--tenant_quotas=%s" . | quote }}
{{- end }}
{{- range $k.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/* kvtierctl health over the Unix socket: the probe of every kvtierd container. */}}
{{- define "kvtier.healthCommand" -}}
exec:
  command: ["kvtierctl", "health", "--server=unix://{{ include "kvtier.socketPath" . }}"]
{{- end -}}

{{/* The kvtierd container, as a native sidecar (sidecar mode) or a plain container. */}}
{{- define "kvtier.container" -}}
{{- $k := .Values.kvtierd -}}
- name: kvtierd
  image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if eq .Values.mode "sidecar" }}
  restartPolicy: Always
  {{- end }}
  args:
    {{- include "kvtier.args" . | nindent 4 }}
  ports:
    - name: metrics
      containerPort: {{ $k.metricsPort }}
      protocol: TCP
  resources:
    requests:
      cpu: {{ $k.cpu | quote }}
      memory: {{ include "kvtier.memoryBytes" . | quote }}
      {{- if eq .Values.mode "sidecar" }}
      ephemeral-storage: {{ include "kvtier.dataVolumeBytes" . | quote }}
      {{- end }}
    limits:
      memory: {{ include "kvtier.memoryBytes" . | quote }}
  startupProbe:
    {{- include "kvtier.healthCommand" . | nindent 4 }}
    periodSeconds: 2
    timeoutSeconds: 5
    failureThreshold: {{ $k.startupFailureThreshold }}
  livenessProbe:
    {{- include "kvtier.healthCommand" . | nindent 4 }}
    periodSeconds: 10
    timeoutSeconds: 5
    failureThreshold: 3
  readinessProbe:
    {{- include "kvtier.healthCommand" . | nindent 4 }}
    periodSeconds: 5
    timeoutSeconds: 5
    failureThreshold: 2
  securityContext:
    runAsNonRoot: true
    runAsUser: {{ $k.uid }}
    runAsGroup: {{ $k.gid }}
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    capabilities:
      drop: ["ALL"]
  volumeMounts:
    - name: kvtier-run
      mountPath: {{ $k.socketDir }}
    - name: kvtier-data
      mountPath: {{ $k.dataDir }}
{{- end -}}
