{{- define "smartgym.fullname" -}}
{{- printf "%s" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "smartgym.component" -}}
{{- .name | replace "_" "-" -}}
{{- end -}}

{{/* Object name of one service's workload, Service and Secret: <release>-<service>. */}}
{{- define "smartgym.name" -}}
{{- printf "%s-%s" (include "smartgym.fullname" .root) (include "smartgym.component" .) -}}
{{- end -}}

{{- define "smartgym.labels" -}}
app.kubernetes.io/name: smartgym
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/component: {{ include "smartgym.component" . }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- with .site }}
smartgym.io/site: {{ . }}
{{- end }}
{{- end -}}

{{- define "smartgym.selector" -}}
app.kubernetes.io/name: smartgym
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ include "smartgym.component" . }}
{{- with .site }}
smartgym.io/site: {{ . }}
{{- end }}
{{- end -}}

{{- define "smartgym.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* facemodel's image: the same build's facemodel target (face extra + default pack). */}}
{{- define "smartgym.facemodelImage" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- printf "%s:%s" .Values.image.repository (default (printf "%s-face" $tag) .Values.image.facemodelTag) -}}
{{- end -}}

{{/* What each service needs from outside: a database of its own, the bus. */}}
{{- define "smartgym.hasDatabase" -}}
{{- if has .name (list "auth" "access" "helper" "branch_owner" "search" "monitoring" "notification" "running" "mlops") }}true{{ end -}}
{{- end -}}

{{- define "smartgym.usesBus" -}}
{{- include "smartgym.hasDatabase" . -}}
{{- end -}}

{{/* The Secret of one service: its own, never another's (services.<name>.existingSecret). */}}
{{- define "smartgym.secret" -}}
{{- .svc.existingSecret | default (include "smartgym.name" .) -}}
{{- end -}}

{{/* In-cluster URL of a service's HTTP port. */}}
{{- define "smartgym.url" -}}
{{- $svc := index .root.Values.services .name -}}
{{- printf "http://%s:%v" (include "smartgym.name" .) $svc.port -}}
{{- end -}}

{{/* The access site the gateway routes /api/access to. */}}
{{- define "smartgym.gatewaySite" -}}
{{- $access := .Values.services.access -}}
{{- $access.gatewaySite | default (index $access.sites 0).name -}}
{{- end -}}

{{/* Environment of one container: shared config, where it writes, how it reaches auth,
     the broker and its database (credentials by reference to its own Secret only), then
     what the service alone needs, then the operator's per-service env. */}}
{{- define "smartgym.env" -}}
{{- $root := .root -}}
{{- $values := $root.Values -}}
{{- $secret := include "smartgym.secret" . -}}
{{- range $key, $value := $values.config }}
- name: {{ $key }}
  value: {{ $value | quote }}
{{- end }}
- name: SMARTGYM_DATA_DIR
  value: {{ $values.dataDir | quote }}
{{- with $values.tracing }}
{{- if .enabled }}
- name: SMARTGYM_TRACING_ENABLED
  value: "true"
- name: SMARTGYM_TRACING_EXPORTER
  value: {{ .exporter | quote }}
{{- with .endpoint }}
- name: SMARTGYM_TRACING_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: SMARTGYM_TRACING_SAMPLE_RATIO
  value: {{ .sampleRatio | quote }}
{{- end }}
{{- end }}
{{- if $values.services.auth.create }}
- name: SMARTGYM_AUTH_URL
  value: {{ include "smartgym.url" (dict "root" $root "name" "auth") | quote }}
{{- end }}
{{- if include "smartgym.usesBus" . }}
{{- with $values.externals.rabbitmq }}
- name: SMARTGYM_BROKER_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ .usernameKey }}}
- name: SMARTGYM_BROKER_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ .passwordKey }}}
- name: SMARTGYM_BROKER_URL
  value: {{ printf "%s://$(SMARTGYM_BROKER_USERNAME):$(SMARTGYM_BROKER_PASSWORD)@%s/%s" (ternary "amqps" "amqp" .tls) (first .hosts) .vhost | quote }}
{{- if gt (len .hosts) 1 }}
# Every node of the cluster: a client moves to a survivor when its node goes.
- name: SMARTGYM_BROKER_ADDRESSES
  value: {{ join "," .hosts | quote }}
{{- end }}
{{- if not .tls }}
- name: SMARTGYM_BROKER_ALLOW_PLAINTEXT
  value: "true"
{{- end }}
{{- end }}
{{- end }}
{{- if include "smartgym.hasDatabase" . }}
{{- with $values.externals.postgresql }}
- name: SMARTGYM_DATABASE_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ .usernameKey }}}
- name: SMARTGYM_DATABASE_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ .passwordKey }}}
- name: SMARTGYM_{{ $.name | upper }}_DATABASE_URL
  value: {{ printf "postgresql+psycopg://$(SMARTGYM_DATABASE_USERNAME):$(SMARTGYM_DATABASE_PASSWORD)@%s:%v/%s%s?sslmode=%s" .host .port .databasePrefix $.name .sslmode | quote }}
{{- end }}
{{- end }}
{{- if eq .name "gateway" }}
{{- range $other, $svc := $values.services }}
{{- if and $svc.create (not (has $other (list "gateway" "auth" "access" "facemodel"))) }}
- name: SMARTGYM_{{ $other | upper }}_URL
  value: {{ include "smartgym.url" (dict "root" $root "name" $other) | quote }}
{{- end }}
{{- end }}
{{- if $values.services.running.create }}
- name: SMARTGYM_RUNNING_LIVE_URL
  value: {{ printf "http://%s:%v" (include "smartgym.name" (dict "root" $root "name" "running")) $values.services.running.livePort | quote }}
{{- end }}
{{- if $values.services.access.create }}
- name: SMARTGYM_ACCESS_URL
  value: {{ printf "http://%s-%s:%v" (include "smartgym.name" (dict "root" $root "name" "access")) (include "smartgym.gatewaySite" $root) $values.services.access.port | quote }}
{{- end }}
{{- end }}
{{- if eq .name "auth" }}
{{- if $values.services.facemodel.create }}
- name: SMARTGYM_FACEMODEL_URL
  value: {{ include "smartgym.url" (dict "root" $root "name" "facemodel") | quote }}
{{- end }}
- name: SMARTGYM_CARDCHECK_URL
  value: {{ $values.partners.cardcheckUrl | quote }}
{{- end }}
{{- if eq .name "notification" }}
- name: SMARTGYM_SMS_ENDPOINT
  value: {{ $values.partners.smsEndpoint | quote }}
{{- with .svc.fcm }}
- name: SMARTGYM_FCM_PROJECT_ID
  value: {{ .projectId | quote }}
- name: SMARTGYM_FCM_ENDPOINT
  value: {{ .endpoint | quote }}
- name: SMARTGYM_FCM_TOKEN_URI
  value: {{ .tokenUri | quote }}
{{- if .serviceAccountSecret }}
- name: SMARTGYM_FCM_SERVICE_ACCOUNT_FILE
  value: /var/run/secrets/fcm/service-account.json
{{- end }}
{{- end }}
{{- end }}
{{- if eq .name "helper" }}
- name: SMARTGYM_HELPER_PHOTO_STORE
  value: s3
- name: SMARTGYM_HELPER_S3_BUCKET
  value: {{ $values.externals.s3.bucket | quote }}
- name: SMARTGYM_HELPER_S3_REGION
  value: {{ $values.externals.s3.region | quote }}
{{- with $values.externals.s3.endpoint }}
- name: SMARTGYM_HELPER_S3_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- if eq .name "branch_owner" }}
- name: SMARTGYM_BRANCH_PHOTO_STORE
  value: s3
- name: SMARTGYM_BRANCH_PHOTO_S3_BUCKET
  value: {{ $values.externals.s3.branchPhotoBucket | quote }}
- name: SMARTGYM_BRANCH_PHOTO_S3_REGION
  value: {{ $values.externals.s3.region | quote }}
{{- with $values.externals.s3.endpoint }}
- name: SMARTGYM_BRANCH_PHOTO_S3_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- if eq .name "search" }}
- name: SMARTGYM_SEARCH_BACKEND
  value: {{ .svc.backend | default "tantivy" | quote }}
- name: SMARTGYM_SEARCH_INDEX_DIR
  value: {{ printf "%s/search-index" $values.dataDir | quote }}
{{- if eq (.svc.backend | default "tantivy") "elasticsearch" }}
- name: SMARTGYM_ELASTICSEARCH_URL
  value: {{ required "externals.elasticsearch.url is needed by search's elasticsearch backend" $values.externals.elasticsearch.url | quote }}
{{- end }}
{{- end }}
{{- if eq .name "monitoring" }}
{{- with .svc.heartbeat }}
- name: SMARTGYM_MONITORING_HEARTBEAT_PORT
  value: {{ .port | quote }}
{{- end }}
{{- end }}
{{- if eq .name "running" }}
- name: SMARTGYM_RUNNING_LIVE_PORT
  value: {{ .svc.livePort | quote }}
- name: SMARTGYM_RUNNING_REPLICA
  valueFrom:
    fieldRef: {fieldPath: metadata.name}
{{- end }}
{{- with $root.Values.services.mlops }}
{{- if .create }}
{{- /* Model-serving processes ask the registry what is deployed as they start. */}}
- name: SMARTGYM_MODEL_REGISTRY_URL
  value: {{ printf "http://%s-%s:%v" (include "smartgym.fullname" $root) (include "smartgym.component" (dict "name" "mlops")) .port | quote }}
{{- end }}
{{- end }}
{{- if has .name (list "facemodel" "helper") }}
{{- /* A model-serving process's name in swap reports and canary buckets; fetched packs go
under its writable data directory, from the bucket mlops writes them to. */}}
- name: SMARTGYM_MODEL_INSTANCE_ID
  valueFrom:
    fieldRef: {fieldPath: metadata.name}
- name: SMARTGYM_MODEL_LOCAL_DIR
  value: {{ printf "%s/models/deployed" $values.dataDir | quote }}
- name: SMARTGYM_MODEL_STORE
  value: s3
- name: SMARTGYM_MODEL_S3_BUCKET
  value: {{ $values.externals.s3.modelBucket | quote }}
- name: SMARTGYM_MODEL_S3_REGION
  value: {{ $values.externals.s3.region | quote }}
{{- with $values.externals.s3.endpoint }}
- name: SMARTGYM_MODEL_S3_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- if hasPrefix "mlops" .name }}
- name: SMARTGYM_MLOPS_PACK_STORE
  value: s3
- name: SMARTGYM_MLOPS_S3_BUCKET
  value: {{ $values.externals.s3.modelBucket | quote }}
- name: SMARTGYM_MLOPS_S3_REGION
  value: {{ $values.externals.s3.region | quote }}
{{- with $values.externals.s3.endpoint }}
- name: SMARTGYM_MLOPS_S3_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: SMARTGYM_MLOPS_PHOTO_STORE
  value: s3
- name: SMARTGYM_MLOPS_PHOTO_BUCKET
  value: {{ $values.externals.s3.bucket | quote }}
{{- /* Training runs in the worker pods, never inside the API's. */}}
- name: SMARTGYM_MLOPS_EMBEDDED_WORKER
  value: "false"
{{- end }}
{{- range $key, $value := .svc.env }}
- name: {{ $key }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* Best-effort spread over zones and nodes. */}}
{{- define "smartgym.topologySpread" -}}
{{- if .root.Values.topologySpread.enabled }}
topologySpreadConstraints:
  {{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
  - maxSkew: 1
    topologyKey: {{ $key }}
    whenUnsatisfiable: {{ $.root.Values.topologySpread.whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "smartgym.selector" $ | nindent 8 }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* Liveness, readiness and start-up probes on a named port. */}}
{{- define "smartgym.probes" -}}
{{- $probes := .root.Values.probes -}}
startupProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  {{- toYaml $probes.startup | nindent 2 }}
livenessProbe:
  httpGet: {path: /healthz, port: {{ .port }}}
  {{- toYaml $probes.liveness | nindent 2 }}
readinessProbe:
  httpGet: {path: /readyz, port: {{ .port }}}
  {{- toYaml $probes.readiness | nindent 2 }}
{{- end -}}

{{/* The writable volumes every pod has: /tmp and the data directory. */}}
{{- define "smartgym.dataVolumes" -}}
- name: tmp
  emptyDir: {}
- name: data
  {{- if .svc.dataVolume }}
  {{- toYaml .svc.dataVolume | nindent 2 }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- end -}}

{{- define "smartgym.dataMounts" -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: {{ .root.Values.dataDir }}
{{- end -}}
