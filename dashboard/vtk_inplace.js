// In-place updates for Panel's synchronized VTK pane (loaded by dashboard/vtk_pane.py).
//
// Panel's browser view of ``pn.pane.VTK`` (VTKSynchronizedPlotView) answers every scene
// update by deleting its vtk.js render window and rendering itself again: a new canvas,
// a new WebGL context and a full replay of the scene, once per update. On a software
// WebGL (kiosk PCs, headless Chromium) under load that rebuild can take longer than the
// update period, and the 3D view then stays blank. vtk.js can apply a scene update to
// the render window it already has (that is what its synchronizer is for), so this
// patch routes the update there: same canvas, same context, only changed objects touched.
//
// It also tells the server which data arrays the browser holds: after each scene is
// applied, the hashes it uses go to the model's ``arrays_processed`` (Panel reserved
// that property for this but never fills it), and the server leaves those arrays out of
// later updates. An array the scene names but the update lacks is refused rather than
// cached empty, so it is not reported and the server sends it again.
//
// Views made before this script ran keep Panel's behaviour (slower, still correct).
// Each in-place update is counted on the view's element (data-amq-syncs) so tests and
// operators can see the patch is active.
(function () {
  "use strict"
  const MODEL = "panel.models.vtk.VTKSynchronizedPlot"

  // Record which arrays a scene asks for, and refuse (instead of caching an empty
  // array) any the update did not carry.
  function strictContext(ctx) {
    if (ctx.__amqStrict) {
      return ctx
    }
    const getArray = ctx.getArray
    ctx.getArray = (hash, dataType, context) => {
      ctx.__amqRequested.add(hash)
      return getArray(hash, dataType, context)
    }
    const setFetch = ctx.setFetchArrayFunction
    ctx.setFetchArrayFunction = (fetch) =>
      setFetch((hash) =>
        fetch(hash).then((data) => {
          if (data == null) {
            ctx.__amqFailed.add(hash)
            throw new Error(`array ${hash} is not in this update`)
          }
          return data
        }),
      )
    ctx.__amqStrict = true
    return ctx
  }

  // The server writes addViewProp/removeViewProp calls relative to the scene it sent
  // before, but a page may skip scenes (coalesced above, or sent before the page drew).
  // Applying such a removal unregisters objects the renderer still shows (or that this
  // page never built: vtk.js throws), after which the renderer and the scene disagree
  // for good. So removals are not applied as sent; after each scene the renderer's view
  // props are made to match the scene's full list instead.
  function dropRemovals(state) {
    const walk = (node) => {
      if (Array.isArray(node.calls)) {
        node.calls = node.calls.filter(([name]) => name !== "removeViewProp")
      }
      ;(node.dependencies || []).forEach(walk)
    }
    walk(state)
  }

  function reconcileProps(state, ctx) {
    let changed = false
    ;(state.dependencies || []).forEach((rendererState) => {
      const renderer = ctx.getInstance(rendererState.id)
      if (renderer == null || renderer.getViewProps == null) {
        return
      }
      const wanted = new Set((rendererState.dependencies || []).map((d) => d.id))
      const shown = new Set()
      renderer.getViewProps().forEach((prop) => {
        const id = ctx.getInstanceId(prop)
        if (id == null) {
          return // not from the scene (Panel's own annotations): leave it
        }
        if (wanted.has(id)) {
          shown.add(id)
        } else {
          renderer.removeViewProp(prop)
          changed = true
        }
      })
      wanted.forEach((id) => {
        const prop = ctx.getInstance(id)
        if (!shown.has(id) && prop != null && prop.isA != null && prop.isA("vtkProp")) {
          renderer.addViewProp(prop)
          changed = true
        }
      })
    })
    return changed
  }

  function patch() {
    const bokeh = window.Bokeh
    if (bokeh == null || bokeh.Models == null) {
      return false
    }
    let model = null
    try {
      model = bokeh.Models.get(MODEL)
    } catch (e) {
      model = null
    }
    if (model == null) {
      return false
    }
    const View = model.prototype.default_view
    if (View == null || View.prototype.__amqInplace) {
      return true
    }
    const connect = View.prototype.connect_signals
    View.prototype.connect_signals = function () {
      const view = this
      const {arrays, scene} = this.model.properties
      const onChange = this.on_change
      // Swap the handler Panel registers for (arrays, scene); keep every other one.
      this.on_change = function (props, fn) {
        if (Array.isArray(props) && props.includes(arrays) && props.includes(scene)) {
          let timer = null
          fn = () => {
            clearTimeout(timer)
            timer = setTimeout(() => view.__amqSync(), 20) // coalesce arrays + scene
          }
        }
        return onChange.call(view, props, fn)
      }
      try {
        connect.call(this)
      } finally {
        delete this.on_change
      }
    }
    // Panel's default axes ({}) have no ticks and draw nothing, yet their label mapper
    // reads the whole depth buffer back on every render. On a software WebGL that
    // readPixels was most of each 3D update (0.3-0.5 s a render), so tickless axes
    // are not built.
    const setAxes = View.prototype._set_axes
    View.prototype._set_axes = function () {
      const axes = this.model.axes
      const tickers = axes == null ? [] : [axes.xticker, axes.yticker, axes.zticker]
      if (tickers.some((t) => t != null && Array.isArray(t.ticks) && t.ticks.length > 0)) {
        setAxes.call(this)
      }
    }
    const syncPlot = View.prototype._sync_plot
    View.prototype._sync_plot = function (state, onSceneReady) {
      const ctx = strictContext(this._synchronizer_context)
      const requested = (ctx.__amqRequested = new Set()) // filled while syncPlot runs
      const failed = (ctx.__amqFailed = new Set())
      // On the first scene of a page the renderer only comes into being during the sync;
      // Panel adds it to the window on the next update, so add it before it is needed.
      const ready = () => {
        const renderer = ctx.getInstance(state.dependencies[0].id)
        if (renderer && !this._vtk_renwin.getRenderer()) {
          this._vtk_renwin.getRenderWindow().addRenderer(renderer)
        }
        return onSceneReady()
      }
      dropRemovals(state)
      return syncPlot
        .call(this, state, ready)
        .then((result) => {
          if (reconcileProps(state, ctx)) {
            this._vtk_render()
          }
          if (requested.size) {
            this.model.arrays_processed = [...requested].filter((hash) => !failed.has(hash))
          }
          return result
        })
        .catch((error) => {
          ctx.resetProgress() // an update that threw left vtk.js waiting for it forever
          throw error
        })
    }
    // Apply the model's latest scene to the existing render window. One update at a
    // time: scenes that arrive while the browser is still drawing are coalesced into
    // the newest, so a slow (software) WebGL falls behind by one scene, never more.
    const remove = View.prototype.remove
    View.prototype.remove = function () {
      this.__amqRemoved = true
      clearTimeout(this.__amqTimer)
      return remove.call(this)
    }
    View.prototype.__amqSync = function () {
      if (this.__amqRemoved) {
        return
      }
      if (this._vtk_renwin == null) {
        this.invalidate_render() // not rendered yet: a full render plots the new scene
        return
      }
      const now = performance.now()
      if (this.__amqBusy && now - this.__amqBusySince < 10000) {
        this.__amqAgain = true // (an update that never finishes stops blocking after 10 s)
        return
      }
      // Hidden (another tab) or drawn recently: come back later. Waiting four times as
      // long as the last update took keeps the 3D view below ~20 % of the page's time,
      // so a slow (software) WebGL never makes the rest of the page sluggish.
      const hidden = this.el.getClientRects().length === 0
      const wait = hidden ? 1000 : (this.__amqLastEnd || 0) + 4 * (this.__amqCost || 0) - now
      if (wait > 0) {
        if (this.__amqTimer == null) {
          this.__amqTimer = setTimeout(() => {
            this.__amqTimer = null
            this.__amqSync()
          }, wait)
        }
        return
      }
      this.__amqBusy = true
      this.__amqBusySince = now
      const state = structuredClone(this.model.scene)
      this._vtk_renwin.getRenderWindow().clearOneTimeUpdaters()
      this._sync_plot(state, () => {
        // Panel's _on_scene_ready, less what an existing window already has (resize,
        // orientation widget, axes): each of those would draw the scene once more.
        this._renderable = true
        const camera = this._vtk_renwin.getRenderer().getActiveCamera()
        this._camera_callbacks.push(camera.onModified(() => this._vtk_render()))
      })
        .then(() => this._set_camera_state())
        .catch((error) => console.error("3D scene update failed", error))
        .finally(() => {
          this.__amqLastEnd = performance.now()
          this.__amqCost = this.__amqLastEnd - now
          this.__amqSyncs = (this.__amqSyncs || 0) + 1
          this.el.setAttribute("data-amq-syncs", String(this.__amqSyncs))
          this.__amqBusy = false
          if (this.__amqAgain) {
            this.__amqAgain = false
            this.__amqSync()
          }
        })
    }
    View.prototype.__amqInplace = true
    return true
  }

  if (!patch()) {
    // Bokeh or Panel not loaded yet (e.g. a notebook): try again for a while.
    let tries = 0
    const timer = setInterval(() => {
      if (patch() || ++tries > 400) {
        clearInterval(timer)
      }
    }, 50)
  }
})()
