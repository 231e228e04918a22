-- Orthanc auto-routing to the screening node (scpnode).
--
-- When a series is stable (no new instance for the configuration's StableAge
-- seconds), Orthanc calls OnStableSeries. A series that matches the criteria
-- below is sent to the node with an asynchronous C-STORE job (the Lua engine
-- is not blocked while it sends; a failed job is listed under /jobs in
-- Orthanc and can be resubmitted there). The node's results (SEG, SR,
-- Secondary Capture) come back into the same study; they are not CT, so they
-- are never forwarded again.
--
-- Criteria, read from the "ScpnodeRouting" section of the Orthanc configuration
-- (deploy/orthanc/orthanc-scpnode.json), with these defaults:
--   Modality            DicomModalities entry of the node          "scpnode"
--   ImageType           values every series must have               ["ORIGINAL", "PRIMARY"]
--   BodyPartKeywords    BodyPartExamined must contain one (empty: any)          []
--   DescriptionKeywords SeriesDescription must contain one (empty: any)         []
--   ExcludeKeywords     SeriesDescription must contain none     ["SCOUT", "LOCALIZER", "TOPOGRAM", "DOSE"]
-- The node applies its own, finer selection rules ([selection]) to what arrives;
-- these criteria only keep obviously useless series off the network.

local function settings()
  local routing = GetOrthancConfiguration()['ScpnodeRouting'] or {}
  return {
    modality = routing['Modality'] or 'scpnode',
    imageType = routing['ImageType'] or { 'ORIGINAL', 'PRIMARY' },
    bodyParts = routing['BodyPartKeywords'] or {},
    descriptions = routing['DescriptionKeywords'] or {},
    exclude = routing['ExcludeKeywords'] or { 'SCOUT', 'LOCALIZER', 'TOPOGRAM', 'DOSE' },
  }
end

-- True when `text` contains one of `keywords` (case-insensitive); `emptyMeans` when there are none.
local function containsAny(text, keywords, emptyMeans)
  if #keywords == 0 then
    return emptyMeans
  end
  local upper = string.upper(text or '')
  for _, keyword in ipairs(keywords) do
    if string.find(upper, string.upper(keyword), 1, true) then
      return true
    end
  end
  return false
end

-- Image Type is an instance attribute: read it from the series' first instance.
local function imageTypeOf(seriesId)
  local instances = ParseJson(RestApiGet('/series/' .. seriesId .. '/instances'))
  if #instances == 0 then
    return {}
  end
  local tags = ParseJson(RestApiGet('/instances/' .. instances[1]['ID'] .. '/simplified-tags'))
  local values = {}
  for value in string.gmatch(tags['ImageType'] or '', '[^\\]+') do
    values[string.upper(value)] = true
  end
  return values
end

-- Why the series is not routed, or nil when it is.
local function refusal(seriesId, tags, criteria)
  if tags['Modality'] ~= 'CT' then
    return 'modality ' .. tostring(tags['Modality'])
  end
  if not containsAny(tags['BodyPartExamined'], criteria.bodyParts, true) then
    return 'body part'
  end
  if not containsAny(tags['SeriesDescription'], criteria.descriptions, true) then
    return 'series description'
  end
  if containsAny(tags['SeriesDescription'], criteria.exclude, false) then
    return 'excluded series description'
  end
  local imageType = imageTypeOf(seriesId)
  for _, value in ipairs(criteria.imageType) do
    if not imageType[string.upper(value)] then
      return 'image type without ' .. value
    end
  end
  return nil
end

function OnStableSeries(seriesId, tags, metadata)
  local criteria = settings()
  local why = refusal(seriesId, tags, criteria)
  if why then
    print('scpnode routing: series ' .. seriesId .. ' not sent (' .. why .. ')')
    return
  end
  local job = ParseJson(RestApiPost('/modalities/' .. criteria.modality .. '/store',
    DumpJson({ Resources = { seriesId }, Asynchronous = true }, true)))
  print('scpnode routing: series ' .. seriesId .. ' sent to ' .. criteria.modality .. ' (job ' .. job['ID'] .. ')')
end
