-- Argo CD health of a retl Sync (one run of a Mapping), from its phase.
local hs = {}
local st = obj.status or {}
local loaded = st.loaded or {}
local phase = st.phase
if phase == nil or phase == "Pending" then
  hs.status = "Progressing"
  hs.message = "waiting for its worker to start"
elseif phase == "InProgress" then
  hs.status = "Progressing"
  local p = st.progress or {}
  hs.message = string.format("syncing: %d records extracted, %d loaded", p.extracted or 0, p.loaded or 0)
elseif phase == "Successful" then
  hs.status = "Healthy"
  hs.message = string.format("%d records loaded", loaded.succeeded or 0)
elseif phase == "PartiallySuccessful" then
  hs.status = "Degraded"
  hs.message = string.format("%d records loaded, %d rejected", loaded.succeeded or 0, loaded.failed or 0)
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = (st.reason or "Failed") .. ": " .. (st.message or "the sync failed")
elseif phase == "Canceled" then
  hs.status = "Suspended"
  hs.message = "canceled on request; what was acknowledged is committed"
else
  hs.status = "Unknown"
  hs.message = "unknown phase " .. tostring(phase)
end
return hs
