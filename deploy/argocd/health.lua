-- Argo CD health of the clipper.ai/v1 custom resources (Cluster, Model, Application), read from the
-- status the clipper controller writes (docs/controller.md, "Custom resources"). argocd-cm needs it
-- once per kind: argocd-cm-health.yaml holds it under each kind's key.
local hs = {}
local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the clipper controller"
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the clipper controller to observe generation " .. generation
  return hs
end

-- the message: the condition's reason for a human, else the status', else its CamelCase reason;
-- a Model's also names its version and ready replicas
local function message(c)
  local text = status.message or ""
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    text = c.message
  elseif text == "" and c ~= nil and c.reason ~= nil then
    text = c.reason
  end
  if obj.kind == "Model" and status.currentVersion ~= nil and status.currentVersion ~= "" then
    local model = "version " .. status.currentVersion
    if status.readyReplicas ~= nil and status.replicas ~= nil then
      model = model .. ", " .. status.readyReplicas .. "/" .. status.replicas .. " replicas ready"
    end
    if text == "" then
      return model
    end
    return model .. ": " .. text
  end
  return text
end

local conditions = {}
for _, c in ipairs(status.conditions or {}) do
  conditions[c.type] = c
end
-- the first condition that is True decides: Degraded, then Ready, then Progressing (the third
-- field: whether the condition explains the health; a Ready one says only "Converged")
local rules = {
  { "Degraded", "Degraded", true },
  { "Ready", "Healthy", false },
  { "Progressing", "Progressing", true },
}
for _, rule in ipairs(rules) do
  local c = conditions[rule[1]]
  if c ~= nil and c.status == "True" then
    hs.status = rule[2]
    if rule[3] then
      hs.message = message(c)
    else
      hs.message = message(nil)
    end
    return hs
  end
end
if status.health == "Missing" then
  hs.status = "Missing"
else
  hs.status = "Progressing"
end
hs.message = message(nil)
return hs
