{{- define "smartgym.fullname" -}}
{{- printf "%s" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "smartgym.component" -}}
{{- .name | replace "_" "-" -}}
{{- end -}}

{{- define "smartgym.labels" -}}
app.kubernetes.io/name: smartgym
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/component: {{ include "smartgym.component" . }}
{{- end -}}

{{- define "smartgym.selector" -}}
app.kubernetes.io/name: smartgym
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ include "smartgym.component" . }}
{{- end -}}

{{- define "smartgym.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Settings every container gets: shared config, per-service URLs, the secret. */}}
{{- define "smartgym.env" -}}
{{- $root := .root -}}
{{- range $key, $value := $root.Values.config }}
- name: {{ $key }}
  value: {{ $value | quote }}
{{- end }}
{{- range $other, $svc := $root.Values.services }}
{{- if $svc.create }}
- name: SMARTGYM_{{ $other | upper }}_URL
  value: {{ printf "http://%s-%s:%v" (include "smartgym.fullname" $root) (include "smartgym.component" (dict "name" $other)) $svc.port | quote }}
{{- end }}
{{- end }}
{{- with $root.Values.services.mlops }}
{{- if .create }}
{{- /* Model-serving processes ask the registry what is deployed as they start. */}}
- name: SMARTGYM_MODEL_REGISTRY_URL
  value: {{ printf "http://%s-%s:%v" (include "smartgym.fullname" $root) (include "smartgym.component" (dict "name" "mlops")) .port | quote }}
{{- end }}
{{- end }}
{{- /* A model-serving process's name in swap reports and canary buckets; its packs go to the writable /tmp. */}}
- name: SMARTGYM_MODEL_INSTANCE_ID
  valueFrom:
    fieldRef: {fieldPath: metadata.name}
- name: SMARTGYM_MODEL_LOCAL_DIR
  value: /tmp/models
{{- range $key, $value := .svc.env }}
- name: {{ $key }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}


{{/* The Secret of one service: its own, never another's (values: services.<name>.secret). */}}
{{- define "smartgym.secret" -}}
{{- .svc.secret | default (printf "%s-%s" (include "smartgym.fullname" .root) (include "smartgym.component" .)) -}}
{{- end -}}
